"""The planners this agent ships: which fault kinds it can inject, and how each is planned.

A kind maps to a pure planner in :mod:`faultmesh.kinds`; traffic control plans per slot (one
combined tc tree per device), everything else per injection.
"""

from __future__ import annotations

from faultmesh.kinds.kill import plan_pod_chaos_wire
from faultmesh.kinds.network import (
    PARTITION_KIND,
    TRAFFIC_CONTROL_KIND,
    partition_planner,
    traffic_control_planner,
)
from faultmesh.kinds.stress import plan_stress_wire

from .injections import PlannerRegistry


def builtin_planners() -> PlannerRegistry:
    """A registry with every built-in kind: StressChaos, PodChaos (container-kill), partition, tc."""
    registry = PlannerRegistry()
    registry.register("StressChaos", plan_stress_wire)
    registry.register("PodChaos", plan_pod_chaos_wire)
    registry.register(PARTITION_KIND, partition_planner)
    registry.register_slot(TRAFFIC_CONTROL_KIND, traffic_control_planner)
    return registry
