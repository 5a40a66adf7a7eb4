"""`python -m testbed.containerd COMMAND`: a private containerd you can drive from a shell.

up [--workdir DIR] [--namespace NS]      start it, import the busybox and pause images; print JSON
run --workdir DIR [--label K=V] [--netns NAME] ID -- CMD...   start a container; print its task PID
ps --workdir DIR                         containers, labels and PIDs, read over gRPC
kill --workdir DIR ID [--signal SIG]     signal a container's task
rm --workdir DIR ID                      delete a container and its task
down --workdir DIR                       remove everything `up` and `run` made
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from testbed.containerd.api import Client
from testbed.containerd.netns import NETNS_DIR
from testbed.containerd.runtime import Containerd, ContainerdError
from testbed.image import BUSYBOX, PAUSE


def _labels(items: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.containerd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up")
    up.add_argument("--workdir", type=Path)
    up.add_argument("--namespace", default="faultmesh")
    run = commands.add_parser("run")
    run.add_argument("--workdir", type=Path, required=True)
    run.add_argument("--label", action="append", default=[])
    run.add_argument("--netns", help="name of a network namespace in /run/netns to join")
    run.add_argument("--image", default=BUSYBOX.name)
    run.add_argument("id")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    for name in ("ps", "down"):
        commands.add_parser(name).add_argument("--workdir", type=Path, required=True)
    kill = commands.add_parser("kill")
    kill.add_argument("--workdir", type=Path, required=True)
    kill.add_argument("--signal", default="SIGKILL")
    kill.add_argument("id")
    remove = commands.add_parser("rm")
    remove.add_argument("--workdir", type=Path, required=True)
    remove.add_argument("id")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            if args.workdir is not None:
                args.workdir.mkdir(parents=True, exist_ok=True)
            daemon = Containerd.start(args.workdir, namespace=args.namespace, owned=False)
            try:
                images = [daemon.import_image(BUSYBOX), daemon.import_image(PAUSE)]
            except BaseException:
                daemon.close()
                raise
            print(
                json.dumps(
                    {
                        "workdir": str(daemon.workdir),
                        "socket": str(daemon.socket),
                        "namespace": daemon.namespace,
                        "images": images,
                    }
                )
            )
        else:
            daemon = Containerd.attach(args.workdir)
            if args.command == "run":
                cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
                netns = NETNS_DIR / args.netns if args.netns else None
                container = daemon.run(args.id, cmd, image=args.image, labels=_labels(args.label, parser), netns=netns)
                print(container.pid)
            elif args.command == "ps":
                with Client(daemon.socket, daemon.namespace) as client:
                    for info in client.list_containers():
                        task = client.get_task(info.id) if info.id in daemon.tasks() else None
                        pid = task.pid if task else "-"
                        status = task.status if task else "NO-TASK"
                        labels = ",".join(f"{k}={v}" for k, v in sorted(info.labels.items()))
                        print(f"{info.id}\t{pid}\t{status}\t{labels}")
            elif args.command == "kill":
                daemon.kill(args.id, args.signal)
            elif args.command == "rm":
                daemon.remove(args.id)
            elif args.command == "down":
                daemon.close()
    except ContainerdError as exc:
        print(f"testbed.containerd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
