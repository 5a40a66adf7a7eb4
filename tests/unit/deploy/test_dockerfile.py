"""deploy/Dockerfile, checked statically (no Docker engine here): what it copies exists and reaches the
builder, pip installs this repository, the runtime stage has the agent's tools, the image runs as a
non-root user by default, and its entrypoint is the `faultmesh` command.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
# BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile in place of the context's .dockerignore.
DOCKERIGNORE = REPO / "deploy" / "Dockerfile.dockerignore"

#: Programs the agent runs in target namespaces, and the Debian package of each.
AGENT_TOOLS = {
    "nsenter": "util-linux",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "ipset": "ipset",
    "tc": "iproute2",
    "ip": "iproute2",
    "stress-ng": "stress-ng",
}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's argv, or None for the shell form."""
        text = self.arguments.strip()
        if not text.startswith("["):
            return None
        argv = json.loads(text)
        assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv), self
        return argv

    def flags_and_operands(self) -> tuple[dict[str, str], list[str]]:
        """``--from=build src dst`` → ({"from": "build"}, ["src", "dst"])."""
        words = shlex.split(self.arguments)
        flags = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages: comments dropped, continuation lines joined."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue  # comments (and parser directives) and blank lines
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            stages.append(Stage(base, name, []))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {number}: only ARG may come before the first FROM"
            name, _, default = instruction.arguments.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether BuildKit leaves ``path`` (relative to the context) out: the last matching pattern on the
    path or any of its parents decides; ``!`` re-includes; ``**`` spans directories."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for token in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        return re.compile(out + "$")

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = regex(raw[1:] if negated else raw)
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


def test_every_stage_is_python_311_on_debian_bookworm(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    # The planners are written against bookworm's tools (stress-ng 0.15, iptables 1.8.9).
    _, stages = dockerfile
    assert len(stages) >= 2, "a build stage and a runtime stage"
    assert {stage.base for stage in stages} == {"python:3.11-slim-bookworm"}


def test_every_copy_source_exists_and_reaches_the_builder(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    patterns = ignore_patterns()
    _, stages = dockerfile
    stage_names = {stage.name for stage in stages if stage.name}
    copied = []
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.keyword not in {"COPY", "ADD"}:
                continue
            flags, operands = instruction.flags_and_operands()
            if "from" in flags:
                assert flags["from"] in stage_names, f"line {instruction.line}: no stage named {flags['from']}"
                continue
            for source in operands[:-1]:
                assert (REPO / source).exists(), f"line {instruction.line}: {source} is not in the repository"
                assert not dockerignore_excludes(source, patterns), (
                    f"line {instruction.line}: {source} is excluded by {DOCKERIGNORE.name}"
                )
                copied.append(source)
    assert copied


def test_dockerignore_keeps_the_venv_and_caches_out() -> None:
    patterns = ignore_patterns()
    for path in (".venv/bin/python", ".git/HEAD", "src/faultmesh/__pycache__/cli.cpython-311.pyc", "tests/conftest.py"):
        assert dockerignore_excludes(path, patterns), path
    for path in ("pyproject.toml", "README.md", "src/faultmesh/cli.py", "src/faultmesh/agent/rpc/agent.proto"):
        assert not dockerignore_excludes(path, patterns), path


def test_pip_installs_the_repository_with_everything_its_build_reads(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {"pyproject.toml", project["readme"], "src"}
    _, stages = dockerfile
    for stage in stages:
        runs = " ".join(i.arguments for i in stage.instructions if i.keyword == "RUN")
        if re.search(r"pip install (\S+ )*\.(\s|$)", runs):
            copied: set[str] = set()
            for instruction in stage.instructions:
                if instruction.keyword == "COPY" and "from" not in instruction.flags_and_operands()[0]:
                    copied.update(source.rstrip("/") for source in instruction.flags_and_operands()[1][:-1])
            assert needed <= copied, f"the pip install stage lacks {sorted(needed - copied)}"
            return
    pytest.fail("no stage runs `pip install .`")


def test_runtime_stage_installs_the_agents_tools(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    runs = " ".join(i.arguments for i in final(dockerfile).instructions if i.keyword == "RUN")
    packages: set[str] = set()
    for command in runs.split("&&"):
        words = command.split()
        if words[:2] == ["apt-get", "install"]:
            packages.update(word for word in words[2:] if not word.startswith("-"))
    assert packages, "the runtime stage installs no Debian packages"
    missing = {tool: package for tool, package in AGENT_TOOLS.items() if package not in packages}
    assert not missing, f"tools the agent runs, without their packages: {missing}"
    assert "rm -rf /var/lib/apt/lists" in runs, "apt's lists should not stay in the image"


def test_image_runs_as_a_non_root_user_by_default(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    users = [i.arguments for i in final(dockerfile).instructions if i.keyword == "USER"]
    assert users, "the runtime stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}
    assert not user.isdigit() or int(user) >= 1000


def test_entrypoint_is_the_faultmesh_console_script(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoints = [i for i in final(dockerfile).instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    # Exec form, so the process receives SIGTERM itself (the agent and controller stop gracefully on it).
    assert entrypoints[-1].exec_form() == ["faultmesh"]
    assert scripts["faultmesh"] == "faultmesh.cli:main"


def test_default_command_prints_the_cli_help(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    from typer.testing import CliRunner

    from faultmesh.cli import app

    commands = [i for i in final(dockerfile).instructions if i.keyword == "CMD"]
    assert commands, "no CMD"
    argv = commands[-1].exec_form()
    assert argv is not None, "CMD should be in exec form"
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "agent" in result.output


def test_the_parser_reads_continuations_flags_and_exec_forms() -> None:
    global_args, stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nARG BASE=debian:12\nFROM ${BASE} AS one\nRUN a \\\n  # note\n && b\n"
        'FROM $BASE\nCOPY --from=one /x /y\nENTRYPOINT ["tool", "run"]\n'
    )
    assert global_args == {"BASE": "debian:12"}
    assert [(s.base, s.name) for s in stages] == [("debian:12", "one"), ("debian:12", None)]
    assert stages[0].instructions[0].arguments == "a  && b"
    assert stages[1].instructions[0].flags_and_operands() == ({"from": "one"}, ["/x", "/y"])
    assert stages[1].instructions[1].exec_form() == ["tool", "run"]
