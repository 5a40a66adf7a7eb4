"""`python -m testbed.vm run [options] -- CMD...`: run a host command inside a Debian kernel VM.

`prepare` downloads the kernel and builds the initramfs without booting (for warming a CI cache).
Exit status: the command's own, or 125 when the VM itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from testbed.image import debian
from testbed.vm.initramfs import fetch_kernel, initramfs_path
from testbed.vm.runner import PACKAGES, VMError, run


def _print_stream(stream: str, text: str) -> None:
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.write(text)
    target.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.vm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="install qemu, fetch the kernel, build the initramfs; print their paths")
    runner = commands.add_parser("run", help="boot, run CMD in the host root, power off")
    runner.add_argument("--cwd", type=Path, help="working directory inside the VM (default: the current one)")
    runner.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment")
    runner.add_argument("--module", action="append", default=[], help="kernel module to load first (repeatable)")
    runner.add_argument("--timeout", type=float, default=600, help="seconds before the VM is killed")
    runner.add_argument("--memory", type=int, default=1024, help="guest memory in MiB")
    runner.add_argument("--accel", choices=("tcg", "kvm"), help="default: $FAULTMESH_VM_ACCEL or tcg")
    runner.add_argument("--timings", action="store_true", help="print boot/run timings to stderr as JSON")
    runner.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        debian.ensure_installed(*PACKAGES)
        kernel = fetch_kernel()
        print(json.dumps({"kernel": str(kernel.vmlinuz), "initramfs": str(initramfs_path(kernel))}))
        return 0

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("run needs a command after --")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    try:
        result = run(
            cmd,
            cwd=args.cwd,
            env=env,
            modules=args.module,
            timeout=args.timeout,
            memory_mb=args.memory,
            accel=args.accel,
            on_output=_print_stream,
        )
    except VMError as exc:
        print(f"testbed.vm: {exc}", file=sys.stderr)
        return 125
    if args.timings:
        print(json.dumps({"accel": result.accel, **result.timings}), file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
