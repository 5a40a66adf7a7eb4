"""deploy/ against a real apiserver: the plain manifests and the rendered Helm chart pass server-side dry-run
(schemas, defaulting, admission; nothing stored), the chart renders the plain manifests' objects, refuses
broken values with a message naming them, generates certificates that chain, its RBAC grants the controller
and the agent what they need and no more (checked with impersonation), and the caBundle patches of
`deploy/generate.py certs` stay in place when the manifests are applied again.

helm is built from its Go module by testbed/helm/build.sh (cached like the Kubernetes binaries).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509

from .conftest import EXIT_NO_GO, REPO, UP_TIMEOUT_S, Cluster, pinned_versions

DEPLOY = REPO / "deploy"
MANIFESTS = DEPLOY / "manifests"
CHART = DEPLOY / "helm" / "faultmesh"
HELM_BUILD = REPO / "testbed" / "helm" / "build.sh"
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_generate() -> ModuleType:
    """deploy/generate.py as a module (deploy/ is not a package)."""
    name = "faultmesh_deploy_generate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEPLOY / "generate.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


generate = load_generate()


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm binary, built from its Go module when the cache lacks it."""
    built = subprocess.run([str(HELM_BUILD), "--path"], capture_output=True, text=True, timeout=UP_TIMEOUT_S,
                           check=False)
    if built.returncode == EXIT_NO_GO:
        pytest.skip(f"cannot build helm here: {built.stderr.strip()}")
    if built.returncode != 0:
        pytest.fail(f"testbed/helm/build.sh failed ({built.returncode}):\n{built.stderr}", pytrace=False)
    return Path(built.stdout.strip())


def helm_template(helm: Path, release: str, namespace: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", release, str(CHART), "--namespace", namespace,
         "--kube-version", pinned_versions()["KUBE_VERSION"], *options],
        capture_output=True, text=True, timeout=120, check=False,
    )


def render(helm: Path, release: str, namespace: str, *options: str) -> list[dict[str, Any]]:
    result = helm_template(helm, release, namespace, *options)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.load_all(result.stdout, Loader=YAML_LOADER) if doc]


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> None:
    """What dry runs of the rest need to exist for real: the CRDs (Established) and the faultmesh namespace."""
    cluster.kubectl("apply", "--server-side", "-f", str(MANIFESTS / "crds.yaml"), timeout=300)
    names = [crd["metadata"]["name"] for crd in generate.all_crds()]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in names))
    cluster.kubectl("apply", "--server-side", "-f", str(MANIFESTS / "namespace.yaml"))


# ------------------------------------------------------------------------------------ plain manifests


def test_plain_manifests_pass_server_side_dry_run(cluster: Cluster, installed: None) -> None:
    """The documented install (`kubectl apply --server-side -k deploy/manifests`), every object accepted."""
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-k", str(MANIFESTS), "-o", "json",
                             timeout=300)
    accepted = json.loads(result.stdout)["items"]
    assert sorted(map(key, accepted)) == sorted(map(key, generate.manifest_documents()))
    daemonset = next(doc for doc in accepted if doc["kind"] == "DaemonSet")
    # Served back as sent: nothing pruned on the way (a field the API does not know would be refused).
    assert daemonset["spec"]["template"]["spec"]["hostPID"] is True
    assert daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] is True


def test_server_side_dry_run_refuses_a_misspelled_field(cluster: Cluster, installed: None) -> None:
    """The dry runs above have teeth: a field the API does not declare is an error, not a silent drop."""
    daemonset = next(doc for doc in generate.manifest_documents() if doc["kind"] == "DaemonSet")
    broken = copy.deepcopy(daemonset)
    broken["spec"]["template"]["spec"]["hostPIDs"] = broken["spec"]["template"]["spec"].pop("hostPID")
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=json.dumps(broken),
                             check=False)
    assert result.returncode != 0
    assert ".spec.template.spec.hostPIDs: field not declared in schema" in result.stderr


def test_an_overlay_points_both_workloads_at_a_registry(cluster: Cluster, tmp_path: Path) -> None:
    """The README's way to use your own image: an overlay with kustomize's `images:`."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = Path(os.path.relpath(MANIFESTS, overlay))  # kustomize refuses an absolute path to a base
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(base)],
        "images": [{"name": "faultmesh", "newName": "registry.example/faultmesh", "newTag": "dev"}],
    }))
    built = [doc for doc in yaml.load_all(cluster.kubectl("kustomize", str(overlay)).stdout, Loader=YAML_LOADER)
             if doc]
    images = {doc["kind"]: doc["spec"]["template"]["spec"]["containers"][0]["image"]
              for doc in built if doc["kind"] in {"Deployment", "DaemonSet"}}
    assert images == {"Deployment": "registry.example/faultmesh:dev", "DaemonSet": "registry.example/faultmesh:dev"}


def neutralised(configuration: dict[str, Any], suffix: str) -> dict[str, Any]:
    """A copy under another name whose webhooks never match an object: this tier has no webhook backend,
    so real configurations with failurePolicy Fail would refuse every other test's experiments."""
    copy_ = copy.deepcopy(configuration)
    copy_["metadata"]["name"] += suffix
    for webhook in copy_["webhooks"]:
        webhook["objectSelector"] = {"matchLabels": {"faultmesh.test/never": "true"}}
    return copy_


def test_ca_bundle_patches_survive_reapplying_the_manifests(cluster: Cluster, installed: None) -> None:
    """`generate.py certs` applied with its own field manager sets every caBundle, and only that: applying
    the manifests again keeps the caBundle, and the patch changes nothing else."""
    suffix = f"-t{hashlib.sha1(str(cluster.state_dir).encode()).hexdigest()[:6]}"
    configurations = [neutralised(c, suffix) for c in generate.webhook_configurations()]
    objects = generate.cert_objects(validity_days=1)
    secrets = [o for o in objects if o["kind"] == "Secret"]
    patches = [copy.deepcopy(o) for o in objects if o["kind"] != "Secret"]
    for patch in patches:
        patch["metadata"]["name"] += suffix
    names = [(c["kind"].lower(), c["metadata"]["name"]) for c in configurations]
    try:
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(configurations))
        cluster.kubectl("apply", "--server-side", "--field-manager=faultmesh-certs", "-f", "-",
                        stdin=yaml.safe_dump_all(patches))
        cluster.kubectl("apply", "--server-side", "--field-manager=faultmesh-certs", "--dry-run=server", "-f", "-",
                        stdin=yaml.safe_dump_all(secrets))
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(configurations))
        expected_bundle = secrets[0]["data"]["ca.crt"]
        for (kind, name), configuration in zip(names, configurations, strict=True):
            stored = cluster.get_json(kind, name)
            assert [w["name"] for w in stored["webhooks"]] == [w["name"] for w in configuration["webhooks"]]
            for webhook, wanted in zip(stored["webhooks"], configuration["webhooks"], strict=True):
                assert webhook["clientConfig"]["caBundle"] == expected_bundle, (name, webhook["name"])
                assert webhook["clientConfig"]["service"] == wanted["clientConfig"]["service"]
                # The apiserver adds defaults (scope: "*"); what we sent is all there.
                pairs = zip(webhook["rules"], wanted["rules"], strict=True)
                assert [{k: rule[k] for k in sent} for rule, sent in pairs] == wanted["rules"]
    finally:
        for kind, name in names:
            cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)


# ---------------------------------------------------------------------------------------- Helm chart


def normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without what only Helm adds: its bookkeeping labels, the certificates' checksum, the caBundle."""
    doc = copy.deepcopy(doc)
    metadatas = [doc["metadata"]]
    if "template" in doc.get("spec", {}):
        metadatas.append(doc["spec"]["template"]["metadata"])
    for metadata in metadatas:
        for label in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
            metadata.get("labels", {}).pop(label, None)
        metadata.get("annotations", {}).pop("checksum/certs", None)
        if metadata.get("annotations") == {}:
            del metadata["annotations"]
    for webhook in doc.get("webhooks", []):
        webhook["clientConfig"].pop("caBundle", None)
    return doc


def test_chart_defaults_render_the_plain_manifests(helm: Path) -> None:
    rendered = {key(doc): doc for doc in render(helm, "faultmesh", "faultmesh")}
    plain = {key(doc): doc for doc in generate.manifest_documents()
             if doc["kind"] not in {"CustomResourceDefinition", "Namespace"}}
    # Helm leaves the release namespace to `--create-namespace` and CRDs to the chart's crds/ directory.
    secrets = (generate.WEBHOOK_SECRET, generate.AGENT_SECRET, generate.AGENT_CLIENT_SECRET)
    assert set(rendered) - set(plain) == {("Secret", name) for name in secrets}
    assert not set(plain) - set(rendered)
    for name, doc in plain.items():
        assert normalised(rendered[name]) == normalised(doc), f"{name}: the chart and deploy/manifests differ"


def test_helm_lint_is_clean(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), "--kube-version", pinned_versions()["KUBE_VERSION"]],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def ca_bundle_file(tmp_path: Path) -> Path:
    """A webhook CA made elsewhere (here by generate.py), as certs.mode=secret takes it; one per test."""
    path = tmp_path / "webhook-ca.crt"
    if not path.exists():
        secret = next(o for o in generate.cert_objects(validity_days=1)
                      if o["kind"] == "Secret" and o["metadata"]["name"] == generate.WEBHOOK_SECRET)
        path.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    return path


VALUE_SETS = {
    "defaults": [],
    "docker-own-certs-opt-in-namespaces": [
        "--set", "agent.runtime=docker", "--set", "agent.socketPath=/var/run/docker.sock",
        "--set", "certs.mode=secret", "--set-file", "certs.webhookCABundle={ca}",
        "--set", "controller.filterNamespaces=true", "--set", "image.repository=registry.example/faultmesh",
        "--set", "image.tag=dev",
    ],
    "one-replica-host-network-cri-o": [
        "--set", "controller.replicas=1", "--set", "controller.allowHostNetwork=true",
        "--set", "controller.workers=8", "--set", "controller.faultLeaseSeconds=60",
        "--set", "agent.runtime=cri-o", "--set", "agent.socketPath=/var/run/crio/crio.sock",
    ],
    "controller-keeps-webhook-certs": ["--set", "certs.mode=controller"],
}


def value_options(name: str, tmp_path: Path) -> list[str]:
    options = VALUE_SETS[name]
    if any("{ca}" in option for option in options):
        ca = ca_bundle_file(tmp_path)
        options = [option.replace("{ca}", str(ca)) for option in options]
    return options


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_chart_passes_server_side_dry_run(
    cluster: Cluster, helm: Path, namespace: str, values: str, tmp_path: Path
) -> None:
    release = f"fm-{hashlib.sha1(namespace.encode()).hexdigest()[:6]}"
    documents = render(helm, release, namespace, *value_options(values, tmp_path))
    result = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", "-o", "json",
                             stdin=yaml.safe_dump_all(documents))
    accepted = json.loads(result.stdout)
    items = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    assert sorted(map(key, items)) == sorted(map(key, documents))


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_chart_command_lines_parse_with_the_cli(helm: Path, values: str, tmp_path: Path) -> None:
    documents = render(helm, "faultmesh", "faultmesh", *value_options(values, tmp_path))
    checks = [generate.check_command_line(line) for line in generate.command_lines(documents)]
    assert not [check.problem for check in checks if check.problem]
    assert sorted(check.line.args[0] for check in checks) == ["agent", "controller"]
    assert not [check for check in checks if check.pending], "both commands exist: their arguments are checked"


def test_chart_values_reach_the_workloads(helm: Path, tmp_path: Path) -> None:
    documents = {key(doc): doc for doc in render(helm, "x", "chaos", *value_options(
        "docker-own-certs-opt-in-namespaces", tmp_path))}
    controller = documents["Deployment", "x-faultmesh-controller"]["spec"]["template"]["spec"]
    agent = documents["DaemonSet", "x-faultmesh-agent"]["spec"]["template"]["spec"]
    assert controller["containers"][0]["image"] == "registry.example/faultmesh:dev"
    assert "--filter-namespaces" in controller["containers"][0]["args"]
    assert "--allow-host-network" not in controller["containers"][0]["args"]
    selector = "app.kubernetes.io/name=faultmesh,app.kubernetes.io/instance=x,app.kubernetes.io/component=agent"
    assert f"--agent-selector={selector}" in controller["containers"][0]["args"]
    # ... and it selects the agent pods.
    pod_labels = documents["DaemonSet", "x-faultmesh-agent"]["spec"]["template"]["metadata"]["labels"]
    assert dict(term.split("=", 1) for term in selector.split(",")).items() <= pod_labels.items()
    assert "--agent-server-name=x-faultmesh-agent.chaos.svc" in controller["containers"][0]["args"]
    assert {"--runtime=docker", "--runtime-socket=/var/run/docker.sock"} <= set(agent["containers"][0]["args"])
    assert not any(arg.startswith("--containerd-namespace") for arg in agent["containers"][0]["args"])
    socket_volume = next(v for v in agent["volumes"] if v["name"] == "runtime-socket")
    assert socket_volume["hostPath"]["path"] == "/var/run"
    # secret mode: no Secrets rendered, the given CA in every webhook.
    assert not [k for k in documents if k[0] == "Secret"]
    bundles = {w["clientConfig"]["caBundle"] for (kind, _), doc in documents.items() if "Webhook" in kind
               for w in doc["webhooks"]}
    assert len(bundles) == 1
    assert base64.b64decode(bundles.pop()) == ca_bundle_file(tmp_path).read_bytes()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "controller.workers=0"], "at '/controller/workers'"),
        (["--set", "certs.mode=secret"], "certs.webhookCABundle: certs.mode=secret needs the webhook's CA"),
        (["--set", "agent.runtime=rkt"], "at '/agent/runtime': value must be one of"),
        (["--set", "controller.replicas=0"], "at '/controller/replicas'"),
        (["--set", "certs.mode=manual"], "at '/certs/mode': value must be one of"),
        (["--set", "certs.mode=controller", "--set", "certs.webhookCABundle=x"],
         "certs.webhookCABundle: with certs.mode=controller the controller writes the webhooks' CA itself"),
    ],
    ids=["no-workers", "secret-mode-without-ca", "unknown-runtime", "no-replicas", "cert-mode", "controller-and-ca"],
)
def test_chart_refuses_broken_values_naming_them(helm: Path, options: list[str], message: str) -> None:
    result = helm_template(helm, "faultmesh", "faultmesh", *options)
    assert result.returncode != 0
    assert message in result.stderr


def test_chart_secret_mode_accepts_cert_manager_injection(helm: Path) -> None:
    documents = render(helm, "faultmesh", "faultmesh", "--set", "certs.mode=secret",
                       "--set-string", r"webhook.annotations.cert-manager\.io/inject-ca-from=faultmesh/webhook")
    webhooks = [doc for doc in documents if "Webhook" in doc["kind"]]
    assert len(webhooks) == 3
    for doc in webhooks:
        assert doc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "faultmesh/webhook"}
        assert all("caBundle" not in w["clientConfig"] for w in doc["webhooks"])


def test_chart_certificates_chain_and_match_the_ca_bundle(helm: Path) -> None:
    documents = {key(doc): doc for doc in render(helm, "faultmesh", "faultmesh")}

    def secret(name: str) -> dict[str, x509.Certificate]:
        data = documents["Secret", name]["data"]
        return {k: x509.load_pem_x509_certificate(base64.b64decode(data[k])) for k in ("ca.crt", "tls.crt")}

    def names(cert: x509.Certificate) -> list[str]:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)

    webhook, agent, client = (secret(generate.WEBHOOK_SECRET), secret(generate.AGENT_SECRET),
                              secret(generate.AGENT_CLIENT_SECRET))
    webhook["tls.crt"].verify_directly_issued_by(webhook["ca.crt"])
    agent["tls.crt"].verify_directly_issued_by(agent["ca.crt"])
    client["tls.crt"].verify_directly_issued_by(agent["ca.crt"])
    assert client["ca.crt"] == agent["ca.crt"]
    assert webhook["ca.crt"] != agent["ca.crt"], "the agents' CA must sign nothing but agent mTLS"
    assert "faultmesh-controller.faultmesh.svc" in names(webhook["tls.crt"])
    assert "faultmesh-agent.faultmesh.svc" in names(agent["tls.crt"])
    ca_pem = base64.b64decode(documents["Secret", generate.WEBHOOK_SECRET]["data"]["ca.crt"])
    for (kind, _), doc in documents.items():
        if "Webhook" in kind:
            assert {base64.b64decode(w["clientConfig"]["caBundle"]) for w in doc["webhooks"]} == {ca_pem}
    # Made once per render: both workloads roll on the same certificates.
    checksums = {doc["spec"]["template"]["metadata"]["annotations"]["checksum/certs"]
                 for (kind, _), doc in documents.items() if kind in {"Deployment", "DaemonSet"}}
    assert len(checksums) == 1


def test_chart_controller_mode_leaves_the_webhook_certificates_to_the_controller(helm: Path) -> None:
    documents = {key(doc): doc for doc in render(helm, "x", "chaos", "--set", "certs.mode=controller")}
    configurations = sorted(name for kind, name in documents if "WebhookConfiguration" in kind)
    assert configurations == ["x-faultmesh-mutation", "x-faultmesh-validate-auth", "x-faultmesh-validation"]
    for name in configurations:
        doc = next(d for (kind, n), d in documents.items() if n == name and "Webhook" in kind)
        assert all("caBundle" not in webhook["clientConfig"] for webhook in doc["webhooks"])
    # The agents' certificates are still the chart's; the webhook's Secret is the controller's to write.
    assert sorted(name for kind, name in documents if kind == "Secret") == [
        "x-faultmesh-agent-certs", "x-faultmesh-agent-client-certs"]
    pod = documents["Deployment", "x-faultmesh-controller"]["spec"]["template"]
    args = pod["spec"]["containers"][0]["args"]
    assert {"--webhook-cert-dir=/etc/faultmesh/webhook", "--webhook-service=x-faultmesh-controller",
            "--webhook-secret=x-faultmesh-webhook-certs"} <= set(args)
    assert sorted(a.split("=", 1)[1] for a in args if a.startswith("--webhook-configuration=")) == configurations
    assert not any(a.startswith(("--webhook-cert=", "--webhook-key=")) for a in args)
    assert ("Service", "x-faultmesh-controller") in documents
    assert {"name": "webhook-certs", "emptyDir": {}} in pod["spec"]["volumes"]
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "webhook-certs")
    assert mount["readOnly"] is False  # the root filesystem is read-only: the copy lives here
    assert "checksum/certs" in pod["metadata"]["annotations"]  # the agent client certificate is still the chart's
    rule = next(r for r in documents["ClusterRole", "x-faultmesh-controller"]["rules"]
                if r["apiGroups"] == ["admissionregistration.k8s.io"])
    assert sorted(rule["resourceNames"]) == configurations
    assert rule["verbs"] == ["get", "patch"]
    assert not any("admissionregistration.k8s.io" in r["apiGroups"]
                   for r in render_rules(helm, "x", "chaos")), "only certs.mode=controller may patch webhooks"


def render_rules(helm: Path, release: str, namespace: str, *options: str) -> list[dict[str, Any]]:
    documents = render(helm, release, namespace, *options)
    return [rule for doc in documents if doc["kind"] == "ClusterRole" for rule in doc["rules"]]


# --------------------------------------------------------------------------------------------- RBAC


@contextlib.contextmanager
def chart_rbac(cluster: Cluster, helm: Path, namespace: str, release: str, *options: str) -> Iterator[tuple[str, str]]:
    """The chart's ServiceAccounts and RBAC applied for real; the controller's and the agent's user names."""
    documents = [doc for doc in render(helm, release, namespace, *options)
                 if doc["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]
    try:
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(documents))
        yield (f"system:serviceaccount:{namespace}:{release}-faultmesh-controller",
               f"system:serviceaccount:{namespace}:{release}-faultmesh-agent")
    finally:
        for doc in documents:
            if doc["kind"].startswith("Cluster"):
                cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found",
                                check=False)


@pytest.fixture
def rbac_installed(cluster: Cluster, helm: Path, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart's RBAC with the default values, under a release name of this test's own."""
    with chart_rbac(cluster, helm, namespace, f"rbac-{hashlib.sha1(namespace.encode()).hexdigest()[:6]}") as users:
        yield users


def can_i(cluster: Cluster, user: str, verb: str, resource: str, namespace: str | None,
          subresource: str | None = None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    extra = [f"--subresource={subresource}"] if subresource else []
    result = cluster.kubectl("auth", "can-i", verb, resource, *where, *extra, f"--as={user}", check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


def test_rbac_grants_the_controller_and_agent_what_they_need_and_no_more(
    cluster: Cluster, rbac_installed: tuple[str, str], namespace: str
) -> None:
    controller, agent = rbac_installed
    elsewhere = "default"
    granted = [
        (controller, "patch", "podchaos.chaos-mesh.org", elsewhere, "status"),
        (controller, "update", "networkchaos.chaos-mesh.org", elsewhere, "finalizers"),
        (controller, "create", "schedules.chaos-mesh.org", elsewhere, None),
        (controller, "watch", "stresschaos.chaos-mesh.org", None, None),
        (controller, "delete", "workflownodes.chaos-mesh.org", elsewhere, None),
        (controller, "list", "pods", None, None),
        (controller, "delete", "pods", elsewhere, None),
        (controller, "patch", "pods", elsewhere, None),
        (controller, "watch", "namespaces", None, None),
        (controller, "list", "nodes", None, None),
        (controller, "create", "events", elsewhere, None),
        (controller, "create", "subjectaccessreviews.authorization.k8s.io", None, None),
        (controller, "update", "leases.coordination.k8s.io", namespace, None),
        (controller, "create", "leases.coordination.k8s.io", namespace, None),
        (controller, "get", "secrets", namespace, None),
        (controller, "watch", "endpointslices.discovery.k8s.io", namespace, None),
        (agent, "get", "pods", elsewhere, None),
    ]
    refused = [
        (controller, "get", "secrets", elsewhere, None),
        (controller, "create", "leases.coordination.k8s.io", elsewhere, None),
        (controller, "delete", "leases.coordination.k8s.io", namespace, None),
        (controller, "create", "pods", elsewhere, None),
        (controller, "update", "deployments.apps", elsewhere, None),
        (controller, "patch", "nodes", None, None),
        (controller, "create", "pods", elsewhere, "exec"),
        (agent, "list", "pods", elsewhere, None),
        (agent, "delete", "pods", elsewhere, None),
        (agent, "get", "secrets", namespace, None),
        (agent, "get", "podchaos.chaos-mesh.org", elsewhere, None),
    ]
    wrong = [f"{'refused' if expected else 'granted'}: {user.rsplit(':', 1)[1]} {verb} {resource}"
             f"{'/' + sub if sub else ''} in {ns or 'all namespaces'}"
             for expected, rows in ((True, granted), (False, refused))
             for user, verb, resource, ns, sub in rows
             if can_i(cluster, user, verb, resource, ns, sub) != expected]
    assert not wrong


def test_rbac_lets_a_controller_keeping_its_certificates_patch_its_webhooks_only(
    cluster: Cluster, helm: Path, namespace: str
) -> None:
    release = f"rbacc-{hashlib.sha1(namespace.encode()).hexdigest()[:6]}"
    with chart_rbac(cluster, helm, namespace, release, "--set", "certs.mode=controller") as (controller, _):
        granted = [(verb, f"{kind}/{release}-faultmesh-{suffix}") for verb in ("get", "patch")
                   for kind, suffix in (("mutatingwebhookconfigurations", "mutation"),
                                        ("validatingwebhookconfigurations", "validation"),
                                        ("validatingwebhookconfigurations", "validate-auth"))]
        refused = [("patch", "mutatingwebhookconfigurations/someone-elses"), ("list", "mutatingwebhookconfigurations"),
                   ("delete", f"validatingwebhookconfigurations/{release}-faultmesh-validation"),
                   ("create", "validatingwebhookconfigurations")]
        wrong = [f"{'refused' if expected else 'granted'}: {verb} {what}"
                 for expected, rows in ((True, granted), (False, refused)) for verb, what in rows
                 if can_i(cluster, controller, verb, what, None) != expected]
        assert not wrong
        assert can_i(cluster, controller, "create", "secrets", namespace)
        assert can_i(cluster, controller, "update", "secrets", namespace)
