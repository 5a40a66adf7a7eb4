"""KernelChaos: make kernel allocations (slab, page, bio) fail inside the selected containers.

Injection goes through BPF kprobe override on the kernel's fault-injection hooks
(``should_failslab``, ``should_fail_alloc_page``, ``should_fail_bio``), optionally only under
a given call chain. It needs a kernel built with ``CONFIG_BPF_KPROBE_OVERRIDE`` and
``CONFIG_FAIL_FUNCTION``; the model itself only checks the request's shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, Model, RuleContext, quote
from .common import ChaosResource, ChaosStatus, ContainerSelector
from .registry import register
from .types import Duration, Int32

#: failtype → the kernel hook that is made to fail.
FAIL_TYPES: dict[int, str] = {0: "should_failslab", 1: "should_fail_alloc_page", 2: "should_fail_bio"}

_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class Frame(Model):
    """One function of a call chain, optionally with a predicate on its arguments."""

    funcname: str | None = Field(default=None, description="Kernel function, as in /proc/kallsyms (e.g. ext4_mount).")
    parameters: str | None = Field(
        default=None, description='Its C parameter list, for the predicate (e.g. "struct dentry *parent").'
    )
    predicate: str | None = Field(
        default=None, description='A C condition on those parameters, e.g. STRNCMP(name->name, "bananas", 8).'
    )

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not self.funcname:
            yield Issue(("funcname",), "is required: each frame of a call chain names a kernel function")
        elif not _C_IDENTIFIER.match(self.funcname):
            yield Issue(("funcname",), f"{quote(self.funcname)} is not a kernel function name (e.g. ext4_mount)")


class FailKernRequest(Model):
    """What to fail (failtype), under which call chain, how often and how many times."""

    failtype: Int32 = Field(ge=0, le=2, description="0: slab allocation, 1: page allocation, 2: block I/O (bio).")
    headers: list[str] | None = Field(
        default=None, description='Kernel headers the predicates need, e.g. "linux/mmzone.h".'
    )
    callchain: list[Frame] | None = Field(
        default=None, description="Fail only under this call chain, outermost first; empty fails any caller."
    )
    probability: Int32 | None = Field(default=None, ge=0, le=100, description="Percent of calls that fail.")
    times: Int32 | None = Field(default=None, ge=0, description="At most this many failures; 0 means no limit.")


class KernelChaosSpec(ContainerSelector):
    """Which containers, and the kernel fault to inject into them."""

    fail_kern_request: FailKernRequest
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    remote_cluster: str | None = None


@register
class KernelChaos(ChaosResource):
    """KernelChaos makes kernel memory or block I/O requests fail for the selected containers."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="kernelchaos",
        # As Chaos Mesh: `subresources: {}`, status written with the object itself.
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(("duration", ".spec.duration", "string", "How long the chaos lasts"),),
    )

    spec: KernelChaosSpec
    status: ChaosStatus | None = None
