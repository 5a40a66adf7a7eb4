"""The agent process: configuration, engine + gRPC server + metrics, and a graceful stop.

Start order matters: the engine replays its journal and reconciles it with the system
(``reconcile_at_start``) *before* the port opens, so no caller ever sees a state the agent has not
converged yet. On SIGTERM or SIGINT the server stops taking calls, lets the ones in flight finish
(``--grace``), and the process exits **leaving every fault in place**: faults belong to their
owners, and the leases recover them if no owner comes back.

``faultmesh agent`` is :func:`agent_command`; ``python -m faultmesh.agent.main`` runs the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import grpc.aio

    from faultmesh.agent.injections import Engine, PlannerRegistry
    from faultmesh.agent.rpc.metrics import MetricsServer
    from faultmesh.agent.rpc.server import AgentService
    from faultmesh.agent.rpc.tls import TlsFiles
    from faultmesh.agent.runtime import RuntimeConfig, Runtimes

log = logging.getLogger("faultmesh.agent")

#: Chaos Mesh's chaos-daemon ports: gRPC 31767, HTTP (metrics) 31766.
DEFAULT_LISTEN = "0.0.0.0:31767"
DEFAULT_METRICS = "0.0.0.0:31766"
DEFAULT_JOURNAL = Path("/var/lib/faultmesh/agent/journal.jsonl")
DEFAULT_GRACE = 10.0
EXIT_INVALID = 2

INSECURE_REFUSAL = (
    "refusing to start without TLS: anyone who can reach {listen} could inject faults into every container "
    "on this node. Give --tls-ca, --tls-cert and --tls-key (`faultmesh agent-certs DIR` makes a set for host "
    "mode), or --insecure to run without TLS anyway."
)
INSECURE_WARNING = (
    "\n"
    "  !!  faultmesh agent is running WITHOUT TLS (--insecure).\n"
    "  !!  Anyone who can reach {listen} can inject faults into every container on this node.\n"
    "  !!  Use this only on loopback or in a throw-away test environment.\n"
)


class AgentConfigError(ValueError):
    """The agent's options are contradictory or incomplete; the message says how to fix them."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``faultmesh agent`` is told on its command line."""

    tls: TlsFiles | None
    insecure: bool = False
    listen: str = DEFAULT_LISTEN
    journal: Path = DEFAULT_JOURNAL
    #: ``host:port`` of the metrics endpoint; empty: no metrics endpoint.
    metrics: str = DEFAULT_METRICS
    runtime: RuntimeConfig | None = None
    #: Seconds in-flight calls may take to finish after SIGTERM.
    grace: float = DEFAULT_GRACE

    def check(self) -> None:
        if self.tls is None and not self.insecure:
            raise AgentConfigError(INSECURE_REFUSAL.format(listen=self.listen))
        if self.tls is not None and self.insecure:
            raise AgentConfigError("--insecure contradicts the TLS files given: choose one")
        if self.grace < 0:
            raise AgentConfigError(f"--grace: {self.grace:g} must be 0 or more seconds")


@dataclass
class RunningAgent:
    """A started agent: what tests and the process entry need to reach it and to stop it."""

    config: AgentConfig
    engine: Engine
    service: AgentService
    server: grpc.aio.Server
    port: int
    metrics_server: MetricsServer | None
    runtimes: Runtimes
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        host = self.config.listen.rpartition(":")[0] or "0.0.0.0"
        return f"{host}:{self.port}"

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server is not None else None

    def describe(self) -> str:
        security = "mutual TLS" if self.config.tls is not None else "NO TLS (--insecure)"
        metrics = (
            f"http://{self.config.metrics.rpartition(':')[0] or '0.0.0.0'}:{self.metrics_port}/metrics"
            if self.metrics_server is not None
            else "off"
        )
        return f"faultmesh agent serving on {self.address} with {security}; metrics {metrics}"


@contextlib.asynccontextmanager
async def running_agent(config: AgentConfig, planners: PlannerRegistry | None = None) -> AsyncIterator[RunningAgent]:
    """Start the agent (journal reconciled first), yield it, and stop it -- leaving faults in place."""
    from faultmesh.agent.exec import Executor
    from faultmesh.agent.injections import Engine
    from faultmesh.agent.journal import Journal
    from faultmesh.agent.planners import builtin_planners
    from faultmesh.agent.rpc.metrics import AgentMetrics, JournalSize, MetricsServer
    from faultmesh.agent.rpc.server import AgentService, start_server
    from faultmesh.agent.runtime import RuntimeConfig, Runtimes

    config.check()
    runtimes = Runtimes(config.runtime or RuntimeConfig())
    executor = Executor(resolve_pid=runtimes.resolve, kill_container=runtimes.kill_async)
    journal = Journal(config.journal)
    engine = Engine(journal, executor, planners if planners is not None else builtin_planners())
    log.info("reconciling the journal %s before serving", config.journal)
    try:
        await engine.start()
    except BaseException:
        await engine.close()
        runtimes.close()
        raise
    metrics = AgentMetrics(journal_size=lambda: JournalSize(journal.size_bytes, journal.record_count))
    service = AgentService(engine, metrics)
    server: grpc.aio.Server | None = None
    metrics_server: MetricsServer | None = None
    try:
        if config.metrics:
            metrics_server = MetricsServer.start(config.metrics, metrics.registry)
        server, port = await start_server(service, config.listen, config.tls)
        agent = RunningAgent(config, engine, service, server, port, metrics_server, runtimes)
        yield agent
    finally:
        if server is not None:
            await server.stop(config.grace)
        await service.close()
        if metrics_server is not None:
            metrics_server.close()
        await engine.close()
        runtimes.close()
        log.info("agent stopped; injections stay in place under their leases")


async def run_agent(
    config: AgentConfig,
    planners: PlannerRegistry | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_agent(config, planners) as agent:
            if config.tls is None:
                sys.stderr.write(INSECURE_WARNING.format(listen=agent.address))
                log.warning("serving without TLS on %s (--insecure)", agent.address)
            announce(agent.describe())
            await stop.wait()
            log.info("stop signal received: no new calls; in-flight calls get %g s", config.grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"faultmesh agent: {message}", err=True)
    return typer.Exit(code)


def agent_command(
    listen: Annotated[str, typer.Option(help="gRPC address, HOST:PORT.")] = DEFAULT_LISTEN,
    tls_ca: Annotated[Path | None, typer.Option(help="CA that signs client certificates (PEM).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="The agent's certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The agent's private key (PEM).")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve without TLS (anyone reaching the port can inject).")
    ] = False,
    journal: Annotated[Path, typer.Option(help="Journal file (survives restarts; keep it on the node).")] = (
        DEFAULT_JOURNAL
    ),
    metrics_address: Annotated[
        str, typer.Option(help="Prometheus endpoint, HOST:PORT; empty turns it off.")
    ] = DEFAULT_METRICS,
    runtime: Annotated[
        str | None, typer.Option(help="containerd, docker, cri-o or process (default: detect).")
    ] = None,
    runtime_socket: Annotated[Path | None, typer.Option(help="The runtime's socket (default: detect).")] = None,
    containerd_namespace: Annotated[str, typer.Option(help="containerd namespace of the pods.")] = "k8s.io",
    host_root: Annotated[Path, typer.Option(help="The host's / as the agent sees it (e.g. /host).")] = Path("/"),
    grace: Annotated[float, typer.Option(help="Seconds in-flight calls get after SIGTERM.")] = DEFAULT_GRACE,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the node agent: inject and recover faults on this node for their owners, over gRPC."""
    from faultmesh.agent.journal import JournalError
    from faultmesh.agent.rpc.metrics import split_address
    from faultmesh.agent.rpc.tls import TlsConfigError, TlsFiles
    from faultmesh.agent.runtime import RuntimeConfig, parse_runtime_name

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise _fail(f'--log-level: "{log_level}" is not one of debug, info, warning, error', EXIT_INVALID)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        split_address(listen)
        if metrics_address:
            split_address(metrics_address)
        tls = TlsFiles.from_options(tls_ca, tls_cert, tls_key)
        if tls is not None:
            tls.read()  # unreadable files are a configuration error, named now
        runtime_config = RuntimeConfig(
            runtime=parse_runtime_name(runtime) if runtime else None,
            socket=runtime_socket,
            containerd_namespace=containerd_namespace,
            host_root=host_root,
        )
        runtime_config.configured_runtime()
        config = AgentConfig(
            tls=tls,
            insecure=insecure,
            listen=listen,
            journal=journal,
            metrics=metrics_address,
            runtime=runtime_config,
            grace=grace,
        )
        config.check()
    except (AgentConfigError, TlsConfigError, ValueError) as error:
        raise _fail(str(error), EXIT_INVALID) from None
    try:
        asyncio.run(run_agent(config, announce=typer.echo))
    except (OSError, JournalError) as error:  # the port is taken, the journal is unwritable or damaged, ...
        raise _fail(str(error), 1) from None


def certs_command(
    directory: Annotated[Path, typer.Argument(help="Where to write ca.crt, server.crt/.key, client.crt/.key.")],
    host: Annotated[
        list[str] | None, typer.Option("--host", help="A name or IP the agent is reached by (repeatable).")
    ] = None,
    client_name: Annotated[str, typer.Option(help="Common name of the client certificate.")] = "faultmesh-client",
) -> None:
    """Make a private CA with one agent (server) and one client certificate, for host mode and tests."""
    from faultmesh.agent.rpc.tls import DEFAULT_SERVER_HOSTS, write_bundle

    bundle = write_bundle(directory, hosts=tuple(host) if host else DEFAULT_SERVER_HOSTS, client_name=client_name)
    typer.echo(f"agent:  --tls-ca {bundle.server.ca} --tls-cert {bundle.server.cert} --tls-key {bundle.server.key}")
    typer.echo(f"client: ca {bundle.client.ca}, cert {bundle.client.cert}, key {bundle.client.key}")


def main(argv: list[str] | None = None) -> None:
    """``python -m faultmesh.agent.main [OPTIONS]``: the agent without the rest of the CLI."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(agent_command)
    app(args=argv, prog_name="faultmesh-agent")


if __name__ == "__main__":
    main()
