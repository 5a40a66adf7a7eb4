"""JVMChaos: inject faults into a Java process through a Byteman agent attached to it.

Each action needs its own fields: ``latency``/``return``/``exception`` a class and method
plus the latency, return value or exception; ``stress`` a CPU count or a memory type;
``ruleData`` a Byteman rule; ``mysql`` a connector version and an exception or latency.

Before Chaos Mesh 2.7.1 the return value was written ``value``, the name the pod selector's
mode value also uses; such a manifest (Chaos Mesh's own ``jvm-return-example.yaml``) still
loads: with action ``return``, no ``returnValue`` and a mode that takes no value, ``value``
is taken as the return value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from .base import CrdInfo, Issue, RuleContext, quote
from .common import ChaosResource, ChaosStatus, ContainerSelector, spec_optional_in_crd
from .registry import register
from .types import Duration, Int32

JVMChaosAction = Literal["latency", "return", "exception", "stress", "gc", "ruleData", "mysql"]

#: The port the Byteman agent listens on unless told otherwise.
DEFAULT_JVM_AGENT_PORT = 9277
MEMORY_TYPES: tuple[str, ...] = ("stack", "heap")
MYSQL_CONNECTOR_VERSIONS: tuple[str, ...] = ("5", "8")
SQL_TYPES: tuple[str, ...] = ("select", "insert", "update", "delete", "replace")


class JVMChaosSpec(ContainerSelector):
    """Which Java processes, and the fault; the action decides which other fields are needed."""

    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    action: JVMChaosAction = Field(description="latency / return / exception / stress / gc / ruleData / mysql")
    # The JVM parameters, inline as in Chaos Mesh.
    port: Int32 = Field(
        default=DEFAULT_JVM_AGENT_PORT, description="Port of the Byteman agent in the target (default 9277)."
    )
    pid: int | None = Field(default=None, description="The Java process to attach to.")
    class_: str | None = Field(default=None, alias="class", description="Java class, e.g. com.example.Main.")
    method: str | None = Field(default=None, description="Method of that class.")
    cpu_count: int | None = Field(default=None, description="CPU cores to burn (action stress).")
    mem_type: str | None = Field(default=None, description="stack or heap: memory to fill (action stress).")
    mysql_connector_version: str | None = Field(
        default=None, description='"5" (5.x.x) or "8" (8.x.x): the mysql-connector-java in use (action mysql).'
    )
    database: str | None = Field(default=None, description="Only SQL on this database (action mysql); empty: any.")
    table: str | None = Field(default=None, description="Only SQL on this table (action mysql); empty: any.")
    sql_type: str | None = Field(default=None, description="Only this kind of SQL, e.g. select (action mysql).")
    name: str | None = Field(default=None, description="Byteman rule name, unique; generated when not set.")
    return_value: str | None = Field(default=None, description="The value returned (action return).")
    exception: str | None = Field(
        default=None, description='Exception thrown (action exception), e.g. java.io.IOException("BOOM").'
    )
    latency: int | None = Field(default=None, description="Milliseconds of delay (actions latency and mysql).")
    rule_data: str | None = Field(default=None, description="A complete Byteman rule (action ruleData).")
    remote_cluster: str | None = None

    def apply_defaults(self, ctx: RuleContext) -> None:
        super().apply_defaults(ctx)
        if not self.port:
            self.port = DEFAULT_JVM_AGENT_PORT
        if self.action == "return" and not self.return_value and self.value and self.mode in ("one", "all"):
            # The pre-2.7.1 spelling of the return value (see the module docstring).
            self.return_value = self.value
        if not self.name:
            # As Chaos Mesh: class-method-action-<unix seconds>, unique enough per object.
            self.name = f"{self.class_ or ''}-{self.method or ''}-{self.action}-{int(time.time())}"

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        if not 0 < self.port <= 65535:
            yield Issue(("port",), f"{self.port} is not a TCP port; use 1-65535 (the agent's default is 9277)")
        for field, number in (("pid", self.pid), ("cpuCount", self.cpu_count), ("latency", self.latency)):
            if number is not None and number < 0:
                yield Issue((field,), f"{number} is negative; it must be ≥ 0")
        yield from self._action_issues()

    def _required(self, field: str, value: Any, what: str) -> Iterator[Issue]:
        if not value:
            yield Issue((field,), f"is required with action {self.action}: {what}")

    def _action_issues(self) -> Iterator[Issue]:
        action = self.action
        if action in ("latency", "return", "exception"):
            yield from self._required("class", self.class_, "the Java class whose method is hit")
            yield from self._required("method", self.method, "the method to hit")
        if action == "latency":
            yield from self._required("latency", self.latency, "the delay in milliseconds (> 0)")
        elif action == "return":
            yield from self._required("returnValue", self.return_value, 'the value to return, e.g. "9999"')
        elif action == "exception":
            yield from self._required("exception", self.exception, 'e.g. java.io.IOException("BOOM")')
        elif action == "ruleData":
            yield from self._required("ruleData", self.rule_data, "the Byteman rule to install")
        elif action == "stress":
            yield from self._stress_issues()
        elif action == "mysql":
            yield from self._mysql_issues()

    def _stress_issues(self) -> Iterator[Issue]:
        if not self.cpu_count and not self.mem_type:
            yield Issue((), "set cpuCount or memType with action stress")
        elif self.cpu_count and self.mem_type:
            yield Issue(("memType",), "cannot be set together with cpuCount: stress either CPU or memory")
        if self.mem_type and self.mem_type not in MEMORY_TYPES:
            yield Issue(("memType",), f"{quote(self.mem_type)} is not a memory type; use stack or heap")

    def _mysql_issues(self) -> Iterator[Issue]:
        version = self.mysql_connector_version
        if not version:
            yield Issue(("mysqlConnectorVersion",), 'is required with action mysql: "5" or "8"')
        elif version not in MYSQL_CONNECTOR_VERSIONS:
            yield Issue(
                ("mysqlConnectorVersion",),
                f'{quote(version)} is not supported; use "5" (for 5.x.x) or "8" (for 8.x.x)',
            )
        if not self.exception and not self.latency:
            yield Issue((), "set exception or latency with action mysql")
        if self.sql_type and self.sql_type not in SQL_TYPES:
            yield Issue(("sqlType",), f"{quote(self.sql_type)} is not an SQL type; use one of {', '.join(SQL_TYPES)}")


@register
class JVMChaos(ChaosResource):
    """JVMChaos delays, fails or stresses Java methods and processes in the selected pods."""

    model_config = ConfigDict(json_schema_extra=spec_optional_in_crd)

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="jvmchaos",
        # As Chaos Mesh: `subresources: {}`, status written with the object itself.
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(
            ("action", ".spec.action", "string", "The JVM fault"),
            ("duration", ".spec.duration", "string", "How long the chaos lasts"),
        ),
    )

    spec: JVMChaosSpec
    status: ChaosStatus | None = None
