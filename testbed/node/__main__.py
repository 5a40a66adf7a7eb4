"""`python -m testbed.node up|down|status --cluster-dir DIR`: a real kubelet node for a test-bed cluster."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from testbed.node.node import EXIT_NO_GO, Node, NodeError, NoGoToolchainError, log

DEFAULT_CLUSTER_DIR = Path("/tmp/faultmesh-cluster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.node", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "start containerd + kubelet, wait for the node to be Ready, print its name"),
                       ("down", "remove the node and everything it made (no-op when there is none)"),
                       ("status", "print the node's state as JSON, and what it would leave behind")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--cluster-dir", type=Path, default=DEFAULT_CLUSTER_DIR,
                         help=f"the testbed/cluster state directory (default {DEFAULT_CLUSTER_DIR})")
        if name == "up":
            sub.add_argument("--name", help="node name (default fm-node-<subnet index>)")
    args = parser.parse_args(argv)
    cluster_dir = args.cluster_dir.resolve()
    try:
        if args.command == "up":
            node = Node.up(cluster_dir, name=args.name)
            print(node.name)
        elif args.command == "down":
            if not (cluster_dir / "node").exists():
                log(f"no node in {cluster_dir}")
                return 0
            Node.attach(cluster_dir).down()
            log(f"node removed from {cluster_dir}")
        else:
            node = Node.attach(cluster_dir)
            state = asdict(node)
            state["cluster_dir"] = str(cluster_dir)
            state["alive"] = {name: daemon.alive() for name, daemon in node.daemons.items()}
            state["residue_if_stopped_now"] = node.residue()
            print(json.dumps(state, indent=2))
    except NoGoToolchainError as error:
        log(f"error: {error}")
        return EXIT_NO_GO
    except NodeError as error:
        log(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
