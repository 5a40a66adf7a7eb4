"""A Debian kernel under qemu that runs one host command with the host root mounted read-only."""

from testbed.vm.runner import VMError, VMResult, run, shared_path

__all__ = ["VMError", "VMResult", "run", "shared_path"]
