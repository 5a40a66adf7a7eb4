"""`python -m testbed.image build [--pause] [--out DIR]`: print the path of a built OCI archive."""

from __future__ import annotations

import argparse
from pathlib import Path

from testbed.image import BUSYBOX, PAUSE, build, busybox_binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.image", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build (or reuse from the cache) an OCI archive")
    build_cmd.add_argument("--pause", action="store_true", help="the pause-like sandbox image instead of busybox")
    build_cmd.add_argument("--out", type=Path, help="directory to write into (default: the testbed cache)")
    commands.add_parser("busybox", help="print the path of the static busybox binary")
    args = parser.parse_args(argv)
    if args.command == "busybox":
        print(busybox_binary())
    else:
        print(build(PAUSE if args.pause else BUSYBOX, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
