"""The table of top-level kinds: kind name → model class.

Kind modules register themselves with :func:`register`; :func:`kinds` imports them all first,
so a caller never sees a half-filled table.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from .base import Resource

_KINDS: dict[str, type[Resource]] = {}

#: Modules that define top-level kinds, in the order ``faultmesh crds`` prints them.
KIND_MODULES = (
    "podchaos",
    "networkchaos",
    "iochaos",
    "stresschaos",
    "timechaos",
    "httpchaos",
    "dnschaos",
    "kernelchaos",
    "jvmchaos",
    "blockchaos",
    "awschaos",
    "gcpchaos",
    "azurechaos",
    "physicalmachinechaos",
    "physicalmachine",
    "remotecluster",
    "podnetworkchaos",
    "podiochaos",
    "podhttpchaos",
    "statuscheck",
    "schedule",
    "workflow",
    "workflownode",
)

R = TypeVar("R", bound=type[Resource])


def register(cls: R) -> R:
    """Class decorator: publish a top-level kind under its class name."""
    _KINDS[cls.kind_name()] = cls
    return cls


def kinds() -> dict[str, type[Resource]]:
    """Every registered kind, all kind modules imported."""
    for module in KIND_MODULES:
        name = f"{__package__}.{module}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            # A kind not written yet is simply absent; the CRD parity test names it.
            if error.name != name:
                raise
    # In KIND_MODULES order, whatever was imported first: generated output (CRDs) must not depend on it.
    order = {module: index for index, module in enumerate(KIND_MODULES)}
    return dict(sorted(_KINDS.items(), key=lambda item: (order.get(item[1].__module__.rsplit(".", 1)[-1], len(order)),
                                                          item[0])))


def kind(name: str) -> type[Resource] | None:
    return kinds().get(name)
