"""Kernel modules of an unpacked Debian kernel: their dependencies, aliases and load order.

A .deb of a kernel ships no modules.dep (depmod writes it at install time) and the host may have no kmod,
so this reads each module's `.modinfo` ELF section directly (the `depends=` and `alias=` strings).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class ModuleError(RuntimeError):
    """A module is missing, malformed, or its dependencies form a cycle."""


def modinfo(path: Path) -> dict[str, list[str]]:
    """The key=value strings of a module's .modinfo section (64-bit little-endian ELF only)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ModuleError(f"{path} is not a 64-bit little-endian ELF file")
    section_offset = struct.unpack_from("<Q", data, 0x28)[0]
    entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size) for i in range(count)]
    names_offset = sections[names_index][4]
    for name_at, _type, _flags, _addr, offset, size, *_rest in sections:
        end = data.index(b"\0", names_offset + name_at)
        if data[names_offset + name_at : end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in data[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ModuleError(f"{path} has no .modinfo section")


@dataclass(frozen=True)
class Module:
    name: str  # as the kernel spells it: dashes become underscores
    path: Path  # relative to /lib/modules/<version>
    depends: tuple[str, ...]
    aliases: tuple[str, ...]


def module_name(path: Path) -> str:
    return path.name.removesuffix(".ko").replace("-", "_")


class ModuleTree:
    """The modules under /lib/modules/<version> of an unpacked kernel, read lazily."""

    def __init__(self, modules_dir: Path) -> None:
        self.root = modules_dir
        self._paths = {module_name(p): p.relative_to(modules_dir) for p in modules_dir.rglob("*.ko")}
        self._cache: dict[str, Module] = {}

    def __contains__(self, name: str) -> bool:
        return name.replace("-", "_") in self._paths

    def names_under(self, subdir: str) -> list[str]:
        """Modules whose file lies under `subdir` (e.g. kernel/net/sched)."""
        prefix = Path(subdir)
        return sorted(n for n, p in self._paths.items() if prefix in p.parents)

    def get(self, name: str) -> Module:
        name = name.replace("-", "_")
        if name not in self._cache:
            if name not in self._paths:
                raise ModuleError(f"kernel module {name} is not in {self.root} (built in, or not built)")
            rel = self._paths[name]
            info = modinfo(self.root / rel)
            depends = tuple(d for joined in info.get("depends", []) for d in joined.split(",") if d)
            self._cache[name] = Module(name, rel, depends, tuple(info.get("alias", [])))
        return self._cache[name]

    def load_order(self, names: Iterable[str]) -> list[Module]:
        """The modules with all their dependencies, each after everything it depends on."""
        ordered: list[Module] = []
        done: set[str] = set()
        visiting: set[str] = set()

        def visit(name: str) -> None:
            module = self.get(name)
            if module.name in done:
                return
            if module.name in visiting:
                raise ModuleError(f"dependency cycle through {module.name}")
            visiting.add(module.name)
            for dependency in module.depends:
                visit(dependency)
            visiting.discard(module.name)
            done.add(module.name)
            ordered.append(module)

        for name in names:
            visit(name)
        return ordered


def modules_dep(modules: Iterable[Module], tree: ModuleTree) -> str:
    """modules.dep text (`path: dep-path dep-path`), as busybox modprobe reads it."""
    lines = []
    for module in modules:
        dependencies = [str(m.path) for m in tree.load_order([module.name]) if m.name != module.name]
        lines.append(f"{module.path}: {' '.join(reversed(dependencies))}".rstrip())
    return "\n".join(lines) + "\n"


def alias_conf(modules: Iterable[Module]) -> str:
    """modprobe.conf alias lines for the names the kernel asks for (e.g. rtnl-link-veth -> veth)."""
    lines = [f"alias {alias} {m.name}" for m in modules for alias in m.aliases if " " not in alias]
    return "\n".join(lines) + "\n"
