"""Host mode's local targets: the inventory file format, facts to pods, and selection over them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from faultmesh.api.loader import load_text
from faultmesh.host import (
    ContainerFacts,
    HostInventoryError,
    HostTargetsError,
    InventoryEntry,
    ProcessFacts,
    build_inventory,
    container_pod,
    inventory_from_facts,
    parse_inventory,
    targets_command,
)
from faultmesh.host.targets import (
    NetworkFacts,
    crictl_container_facts,
    docker_container_facts,
    pod_ips_from_links,
    pod_summary,
    primary_address,
)
from faultmesh.kinds.experiment import RecordWork, records_work, selector_key
from faultmesh.kinds.plan import PlanError
from faultmesh.selection import plan_experiment

NODE = "host-1"


def _problems(text: str) -> list[str]:
    with pytest.raises(HostInventoryError) as caught:
        parse_inventory(text, source="inv.yaml")
    return caught.value.problems


def test_inventory_entries_of_each_kind() -> None:
    entries = parse_inventory(
        """
targets:
  - {namespace: demo, name: web, labels: {app: web}, pid: 42}
  - {name: worker, command: "sleep 3600"}
  - {name: backend, netns: fm-backend}
"""
    )
    assert entries == [
        InventoryEntry("demo", "web", "pid", "42", {"app": "web"}),
        InventoryEntry("default", "worker", "command", "sleep 3600", {}),
        InventoryEntry("default", "backend", "netns", "fm-backend", {}),
    ]


def test_empty_inventory_has_no_entries() -> None:
    assert parse_inventory("") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("targets: [{name: a}]", "inv.yaml: targets[0]: needs exactly one of pid, command, netns (found none)"),
        ("targets: [{name: a, pid: 1, netns: x}]", "netns (found pid, netns)"),
        ("targets: [{name: a, pid: -3}]", "targets[0].pid: -3 is not a positive process id"),
        ("targets: [{name: a, pid: true}]", "targets[0].pid: True is not a positive process id"),
        ("targets: [{pid: 3}]", "targets[0].name: required"),
        ("targets: [{name: a, pid: 3, labels: {app: 'a b'}}]", "targets[0].labels.app: "),
        ("targets: [{name: a, pid: 3, labels: {app: 1}}]", "targets[0].labels.app: keys and values must be strings"),
        ("targets: [{name: a, pid: 3, lables: {}}]", "targets[0].lables: unknown field"),
        ("targets: [{name: a, netns: ../x}]", "targets[0].netns: '../x' is not a netns name"),
        ("targets: [{name: a, command: ''}]", "targets[0].command: must be a non-empty string"),
        ("targets: [{name: a, pid: 3}, {name: a, pid: 4}]", "targets[1].name: default/a is already named by"),
        ("targets: [7]", "targets[0]: must be a mapping"),
        ("targets: {name: a}", "inv.yaml: targets: must be a list"),
        ("- name: a", "inv.yaml: must be a mapping with one key, targets"),
        ("targets: [", "inv.yaml: not valid YAML"),
    ],
)
def test_inventory_errors_name_the_field(text: str, expected: str) -> None:
    assert any(expected in problem for problem in _problems(text)), _problems(text)


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems("targets: [{name: a}, {name: b, pid: 0}]")
    assert len(problems) == 2 and all(problem.startswith("inv.yaml: targets[") for problem in problems)


def test_a_missing_inventory_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(HostTargetsError, match=f"{missing}: no such inventory file"):
        build_inventory(missing, containerd_socket=None, node_name=NODE)


def test_container_facts_become_a_pod() -> None:
    labels = {"app": "web", "io.kubernetes.container.name": "nginx"}
    network = NetworkFacts(("169.254.10.1", "fd00::1"))
    pod = container_pod(ContainerFacts("web-1", labels, running=True, network=network), NODE, host_ip="192.0.2.2")
    assert (pod.key, pod.phase, pod.node_name, dict(pod.labels)) == ("default/web-1", "Running", NODE, labels)
    assert (pod.pod_ips, pod.pod_ip, pod.host_network, pod.host_ip) == (
        ("169.254.10.1", "fd00::1"), "169.254.10.1", False, "192.0.2.2",
    )
    assert [container.name for container in pod.containers] == ["nginx"]
    assert pod.container_id("nginx") == "containerd://web-1"
    stopped = container_pod(ContainerFacts("db-1", {}, running=False, namespace="ns"), NODE)
    assert (stopped.key, stopped.phase, stopped.containers[0].name, stopped.container_id("db-1"), stopped.pod_ips) == (
        "ns/db-1", "Pending", "db-1", "containerd://db-1", (),
    )


def test_a_docker_container_is_named_by_its_docker_name() -> None:
    facts = ContainerFacts("6cdc0ee8", {"app": "web"}, running=True, runtime="docker", namespace="docker", name="web")
    pod = container_pod(facts, NODE)
    assert (pod.key, pod.containers[0].name, pod.container_id("web")) == ("docker/web", "web", "docker://6cdc0ee8")


def test_process_facts_become_pods_and_unresolved_ones_are_pending_with_a_note() -> None:
    host = NetworkFacts(("192.0.2.2",), host_network=True)
    found = ProcessFacts(InventoryEntry("demo", "web", "pid", "42", {"app": "web"}), 42, network=host)
    lost = ProcessFacts(InventoryEntry("demo", "gone", "command", "nothing"), None, "no process matches")
    inventory = inventory_from_facts([], [found, lost], NODE, host_ip="192.0.2.2")
    web, gone = inventory.pods
    assert (web.phase, web.container_id("web"), web.pod_ips, web.host_network) == (
        "Running", "process://42", ("192.0.2.2",), True,
    )
    assert (gone.phase, gone.container_id("gone"), gone.pod_ips, gone.host_network) == ("Pending", None, (), False)
    assert {pod.host_ip for pod in inventory.pods} == {"192.0.2.2"}
    assert inventory.notes == ("demo/gone: no process matches",)
    assert [node.name for node in inventory.nodes or ()] == [NODE]
    assert [namespace.name for namespace in inventory.namespaces or ()] == ["demo"]


def test_a_name_given_by_both_sources_is_refused() -> None:
    clash = ProcessFacts(InventoryEntry("default", "web", "pid", "1"), 1)
    with pytest.raises(HostTargetsError, match="default/web: named by both containerd and the inventory file"):
        inventory_from_facts([ContainerFacts("web")], [clash], NODE)


def test_a_name_given_by_two_runtimes_is_refused() -> None:
    docker = ContainerFacts("0123abcd", runtime="docker", namespace="default", name="web")
    with pytest.raises(HostTargetsError, match="default/web: named by both containerd and docker"):
        inventory_from_facts([ContainerFacts("web"), docker], [], NODE)


# What `ip -j addr show` printed in a test namespace: loopback, and a veth with a link-local IPv4 address,
# a unique-local IPv6 one and the kernel's own (tentative) link-local IPv6 one.
IP_ADDR_SHOW = json.loads("""[
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"link_type":"loopback","addr_info":[
   {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"},
   {"family":"inet6","local":"::1","prefixlen":128,"scope":"host"}]},
 {"ifindex":2,"link_index":2,"ifname":"fmtca","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"link_type":"ether",
  "link_netnsid":0,"addr_info":[
   {"family":"inet6","local":"fd00:fa::1","prefixlen":64,"scope":"global","nodad":true},
   {"family":"inet","local":"169.254.77.1","prefixlen":24,"scope":"global","label":"fmtca"},
   {"family":"inet6","local":"fe80::c1c:7eff:feea:c058","prefixlen":64,"scope":"link","tentative":true}]},
 {"ifindex":3,"ifname":"eth1","flags":["BROADCAST"],"link_type":"ether","addr_info":[
   {"family":"inet","local":"10.1.0.5","prefixlen":16,"scope":"global","label":"eth1"},
   {"family":"inet6","local":"2001:db8::5","prefixlen":64,"scope":"global","dadfailed":true,"tentative":true},
   {"family":"inet","local":"169.254.77.1","prefixlen":24,"scope":"global","label":"eth1"}]},
 {"ifindex":4,"ifname":"ifb0","flags":["BROADCAST","NOARP"],"link_type":"ether","addr_info":[]}
]""")


def test_pod_ips_are_ipv4_first_without_loopback_link_local_ipv6_or_duplicates() -> None:
    assert pod_ips_from_links(IP_ADDR_SHOW) == ("169.254.77.1", "10.1.0.5", "fd00:fa::1")


def test_a_namespace_with_only_loopback_has_no_pod_ips() -> None:
    assert pod_ips_from_links(IP_ADDR_SHOW[:1]) == ()
    assert pod_ips_from_links([]) == ()


def test_the_primary_address_is_on_the_default_route_device() -> None:
    assert primary_address(IP_ADDR_SHOW, [{"dst": "default", "gateway": "10.1.0.1", "dev": "eth1"}]) == "10.1.0.5"
    assert primary_address(IP_ADDR_SHOW, []) == "169.254.77.1"  # no default route: the first pod IP
    assert primary_address(IP_ADDR_SHOW[:1], []) == ""


# Docker's GET /containers/json?all=1, as a private dockerd answered it (fields selection does not read cut).
DOCKER_CONTAINERS = json.loads("""[
 {"Id": "42d01e67abf2b8c0cdf0fd005f574d845b75ad2550cb0c20cb212f7f77c807ce", "Names": ["/fmt-hostnet"],
  "Image": "faultmesh.local/busybox:latest", "State": "running", "Status": "Up 2 seconds", "Labels": {},
  "HostConfig": {"NetworkMode": "host"}},
 {"Id": "9897bbe9d768f1c2cb6af5e1f9f2b73a0643f9a57d9a0c73fd2f603df9ade4a8", "Names": ["/fmt-stopped"],
  "Image": "faultmesh.local/busybox:latest", "State": "created", "Status": "Created", "Labels": null,
  "HostConfig": {"NetworkMode": "none"}},
 {"Id": "6cdc0ee82706afd26039d874ea3ed93765af988095f8a6fd8277dc0e52e19901", "Names": ["/fmt-web/db", "/fmt-web"],
  "Image": "faultmesh.local/busybox:latest", "State": "running", "Status": "Up 3 seconds",
  "Labels": {"app": "web", "io.kubernetes.pod.namespace": "demo", "io.kubernetes.container.name": "httpd"},
  "HostConfig": {"NetworkMode": "none"}},
 {"Names": ["/no-id"], "State": "running"}
]""")


def test_docker_containers_become_facts() -> None:
    hostnet, stopped, web = docker_container_facts(DOCKER_CONTAINERS)
    assert (hostnet.key, hostnet.running, hostnet.runtime, hostnet.labels) == ("docker/fmt-hostnet", True, "docker", {})
    assert (stopped.key, stopped.running) == ("docker/fmt-stopped", False)
    assert (web.key, web.container_name, web.labels["app"]) == ("demo/fmt-web", "httpd", "web")
    pod = container_pod(web, NODE)
    assert pod.container_id("httpd") == "docker://6cdc0ee82706afd26039d874ea3ed93765af988095f8a6fd8277dc0e52e19901"
    assert docker_container_facts({"message": "not a list"}) == []


# `crictl ps --all --output json` (CRI ListContainers as crictl prints it).
CRICTL_PS = json.loads("""{"containers": [
 {"id": "4f2a9c8e1b3d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f", "podSandboxId": "5b1c",
  "metadata": {"name": "api", "attempt": 3}, "image": {"image": "registry.k8s.io/api:1.2", "annotations": {}},
  "imageRef": "sha256:abc", "state": "CONTAINER_RUNNING", "createdAt": "1727600000000000000",
  "labels": {"io.kubernetes.pod.name": "api-7d9f", "io.kubernetes.pod.namespace": "prod",
             "io.kubernetes.container.name": "api", "app": "api"},
  "annotations": {"io.kubernetes.container.restartCount": "3"}},
 {"id": "9e8d7c6b5a4f", "podSandboxId": "77aa", "metadata": {"name": "migrate", "attempt": 0},
  "image": {"image": "app:1"}, "imageRef": "sha256:def", "state": "CONTAINER_EXITED",
  "createdAt": "1727600000000000001", "labels": {}, "annotations": {}}
]}""")


def test_crictl_containers_become_facts() -> None:
    api, migrate = crictl_container_facts(CRICTL_PS)
    assert (api.key, api.running, api.container_name, api.labels["app"]) == (
        "prod/4f2a9c8e1b3d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f", True, "api", "api",
    )
    assert (migrate.key, migrate.running, migrate.container_name) == ("cri-o/9e8d7c6b5a4f", False, "migrate")
    assert container_pod(migrate, NODE).container_id("migrate") == "cri-o://9e8d7c6b5a4f"
    assert crictl_container_facts({}) == []


PARTITION = """
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: cut, namespace: default}
spec:
  action: partition
  mode: all
  direction: both
  selector: {labelSelectors: {app: web}}
  target:
    mode: all
    selector: {labelSelectors: {app: db}}
"""


def _network_records(inventory_pods: list[ContainerFacts]) -> list[RecordWork]:
    (experiment,) = load_text(PARTITION).objects
    inventory = inventory_from_facts(inventory_pods, [], NODE)
    selections = {selector_key(plan.path): plan.selection for plan in plan_experiment(experiment, inventory, seed=1)}
    return list(records_work(experiment, "uid-1", selections))


def test_network_chaos_reads_the_local_targets_pod_ips() -> None:
    web = ContainerFacts("web-1", {"app": "web"}, running=True, network=NetworkFacts(("169.254.10.1",)))
    db = ContainerFacts("db-1", {"app": "db"}, running=True, network=NetworkFacts(("169.254.10.2", "fd00::2")))
    records = _network_records([web, db])
    targets = {work.target.record_id: work.target for record in records for work in record.works}
    assert {key: list(target.facts.values()) for key, target in targets.items()} == {
        "default/web-1": [["169.254.10.1"]], "default/db-1": [["169.254.10.2", "fd00::2"]],
    }


def test_network_chaos_refuses_a_host_network_target() -> None:
    web = ContainerFacts("web-1", {"app": "web"}, running=True,
                         network=NetworkFacts(("192.0.2.2",), host_network=True))
    db = ContainerFacts("db-1", {"app": "db"}, running=True, network=NetworkFacts(("169.254.10.2",)))
    with pytest.raises(PlanError, match="default/web-1 uses the host's network"):
        _network_records([web, db])


def test_pod_summary_names_the_runtime_and_the_ips() -> None:
    docker = container_pod(ContainerFacts("abc", runtime="docker", namespace="docker", name="web",
                                          network=NetworkFacts(("192.0.2.2",), host_network=True)), NODE,
                           host_ip="192.0.2.2")
    summary = pod_summary(docker)
    assert {key: summary[key] for key in ("runtime", "podIPs", "hostNetwork", "hostIP")} == {
        "runtime": "docker", "podIPs": ["192.0.2.2"], "hostNetwork": True, "hostIP": "192.0.2.2",
    }
    pending = inventory_from_facts([], [ProcessFacts(InventoryEntry("d", "p", "pid", "9"), None, "gone")], NODE)
    assert pod_summary(pending.pods[0])["runtime"] == "process"


POD_KILL = """
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: kill-web, namespace: default}
spec:
  action: container-kill
  mode: all
  containerNames: [nginx]
  selector:
    labelSelectors: {app: web}
"""


def test_a_label_selector_picks_local_targets() -> None:
    web = ContainerFacts("web-1", {"app": "web", "io.kubernetes.container.name": "nginx"}, running=True)
    db = ContainerFacts("db-1", {"app": "db", "io.kubernetes.container.name": "nginx"}, running=True)
    other = ProcessFacts(InventoryEntry("default", "proc", "pid", "7", {"app": "db"}), 7)
    (experiment,) = load_text(POD_KILL).objects
    (plan,) = plan_experiment(experiment, inventory_from_facts([web, db], [other], NODE), seed=1)
    assert [(target.pod.key, target.container_id) for target in plan.selection.containers] == [
        ("default/web-1", "containerd://web-1")
    ]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(targets_command)
    return app


@pytest.fixture
def quiet_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No runtime sockets, this process's namespace taken as the host's, and `ip` answering IP_ADDR_SHOW.

    The command's own I/O is real everywhere else (the inventory file, /proc); the node tier runs it for real.
    """
    monkeypatch.setattr("faultmesh.host.targets.DEFAULT_SOCKET", tmp_path / "containerd.sock")
    monkeypatch.setattr("faultmesh.host.targets.DOCKER_SOCKETS", (tmp_path / "docker.sock",))
    monkeypatch.setattr("faultmesh.host.targets.CRIO_SOCKETS", (tmp_path / "crio.sock",))
    monkeypatch.setattr("faultmesh.host.targets._host_netns_path", lambda: "/proc/self/ns/net")
    calls: list[tuple[str | None, tuple[str, ...]]] = []

    def ip_json(netns_path: str | None, *args: str) -> object:
        calls.append((netns_path, args))
        return IP_ADDR_SHOW if args[0] == "addr" else [{"dst": "default", "gateway": "10.1.0.1", "dev": "eth1"}]

    monkeypatch.setattr("faultmesh.host.targets._ip_json", ip_json)
    return tmp_path


def test_targets_command_lists_processes_as_json_and_notes_a_missing_default_socket(quiet_host: Path) -> None:
    inventory = quiet_host / "inv.yaml"
    inventory.write_text(f"targets: [{{name: me, labels: {{app: test}}, pid: {os.getpid()}}}]")
    result = CliRunner().invoke(_app(), ["--inventory", str(inventory), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert f"no containerd socket at {quiet_host / 'containerd.sock'}" in result.output
    listed = json.loads(result.stdout)
    assert listed == [{
        "namespace": "default", "name": "me", "labels": {"app": "test"}, "phase": "Running", "runtime": "process",
        "podIPs": ["169.254.77.1", "10.1.0.5", "fd00:fa::1"], "hostNetwork": True, "hostIP": "10.1.0.5",
        "containers": [{"name": "me", "containerID": f"process://{os.getpid()}"}],
    }]


def test_targets_command_table_shows_each_container(quiet_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = quiet_host / "inv.yaml"
    inventory.write_text(f"targets: [{{namespace: demo, name: me, labels: {{app: test}}, pid: {os.getpid()}}}]")
    monkeypatch.setenv("COLUMNS", "250")  # rich sizes the table from it; a long cell must not wrap
    result = CliRunner().invoke(_app(), ["--inventory", str(inventory)])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "demo/me" in line]
    assert [cell.strip() for cell in row.strip("│┃ ").split("│")] == [
        "demo/me", "app=test", "me", f"process://{os.getpid()}", "process",
        "169.254.77.1,10.1.0.5,fd00:fa::1 (host network)", "Running",
    ]


def test_a_default_docker_socket_nobody_answers_on_is_a_note(quiet_host: Path) -> None:
    (quiet_host / "docker.sock").write_text("")  # a stale path: there, but nothing listens
    result = CliRunner().invoke(_app(), ["-o", "json"])
    assert result.exit_code == 0, result.output
    assert f"{quiet_host / 'docker.sock'}: its containers are not listed" in result.output
    assert "--docker-socket" in result.output
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("option", ["--docker-socket", "--crio-socket", "--containerd-socket"])
def test_an_explicit_runtime_socket_must_answer(quiet_host: Path, option: str) -> None:
    stale = quiet_host / "stale.sock"
    stale.write_text("")
    result = CliRunner().invoke(_app(), [option, str(stale)])
    assert result.exit_code == 2, result.output
    assert f"{option}: " in result.output and "Traceback" not in result.output


def test_listing_cri_o_without_crictl_says_what_to_install(
    quiet_host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("faultmesh.host.targets.shutil.which", lambda name: None)
    (quiet_host / "crio.sock").write_text("")
    explicit = CliRunner().invoke(_app(), ["--crio-socket", str(quiet_host / "crio.sock")])
    assert explicit.exit_code == 2
    assert "--crio-socket: listing CRI-O's containers needs crictl: install it (Debian/Ubuntu package cri-tools" in (
        explicit.output.replace("\n", " ")
    )
    default = CliRunner().invoke(_app(), [])
    assert default.exit_code == 0 and "needs crictl" in default.output


def test_targets_command_refuses_an_explicit_socket_that_is_not_there(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["--containerd-socket", str(tmp_path / "absent.sock")])
    assert result.exit_code == 2, result.output
    assert f"--containerd-socket: {tmp_path / 'absent.sock'} does not exist" in result.output
    assert "Traceback" not in result.output


def test_targets_command_refuses_a_malformed_inventory_with_exit_2(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("targets: [{name: a, pid: zero}]")
    result = CliRunner().invoke(_app(), ["--inventory", str(inventory)])
    assert result.exit_code == 2
    assert f"{inventory}: targets[0].pid: 'zero' is not a positive process id" in result.output
    assert "Traceback" not in result.output
