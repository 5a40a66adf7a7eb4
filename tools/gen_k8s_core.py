#!/usr/bin/env python3
"""Generate ``src/faultmesh/api/k8s/core.py``: the Kubernetes core/v1 types Chaos Mesh embeds.

Workflow task templates carry a full ``corev1.Container`` and ``[]corev1.Volume``; statuses
hold object references. Writing those hundreds of fields by hand invites drift, so this
script reads them from the OpenAPI schemas of the reference CRDs (which inline the Go types)
and prints one pydantic model per Kubernetes type, in dependency order.

The CRD schemas carry no type names, so ``TYPE_NAMES`` names each nested object after its
Kubernetes type; a property it does not know, or one name given to two different shapes,
stops the script rather than guessing. Descriptions are left out on purpose (they are
Kubernetes' prose; the field names say enough).

    python tools/gen_k8s_core.py            # rewrite the module
    python tools/gen_k8s_core.py --check    # exit 1 if the committed module is stale
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faultmesh.api.k8s.scalars import QUANTITY_PATTERN

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CRD_DIR = REPO.parent / "shared" / "reference" / "chaos-mesh" / "crd"
DEFAULT_OUTPUT = REPO / "src" / "faultmesh" / "api" / "k8s" / "core.py"

#: (CRD file, path inside openAPIV3Schema, Kubernetes type name) of each root type.
ROOTS: tuple[tuple[str, str, str], ...] = (
    ("chaos-mesh.org_workflows.yaml", "spec.templates[].task.container", "Container"),
    ("chaos-mesh.org_workflows.yaml", "spec.templates[].task.volumes[]", "Volume"),
    ("chaos-mesh.org_schedules.yaml", "status.active[]", "ObjectReference"),
    ("chaos-mesh.org_workflownodes.yaml", "status.chaosResource", "TypedLocalObjectReference"),
    ("chaos-mesh.org_workflownodes.yaml", "status.activeChildren[]", "LocalObjectReference"),
)

#: Property name → Kubernetes type of the object it holds; a dict picks by the parent type.
TYPE_NAMES: dict[str, str | dict[str, str]] = {
    "appArmorProfile": "AppArmorProfile",
    "awsElasticBlockStore": "AWSElasticBlockStoreVolumeSource",
    "azureDisk": "AzureDiskVolumeSource",
    "azureFile": "AzureFileVolumeSource",
    "capabilities": "Capabilities",
    "cephfs": "CephFSVolumeSource",
    "cinder": "CinderVolumeSource",
    "claims": "ResourceClaim",
    "clusterTrustBundle": "ClusterTrustBundleProjection",
    "configMap": {"Volume": "ConfigMapVolumeSource", "VolumeProjection": "ConfigMapProjection"},
    "configMapKeyRef": "ConfigMapKeySelector",
    "configMapRef": "ConfigMapEnvSource",
    "csi": "CSIVolumeSource",
    "dataSource": "TypedLocalObjectReference",
    "dataSourceRef": "TypedObjectReference",
    "downwardAPI": {"Volume": "DownwardAPIVolumeSource", "VolumeProjection": "DownwardAPIProjection"},
    "emptyDir": "EmptyDirVolumeSource",
    "env": "EnvVar",
    "envFrom": "EnvFromSource",
    "ephemeral": "EphemeralVolumeSource",
    "exec": "ExecAction",
    "exitCodes": "ContainerRestartRuleOnExitCodes",
    "fc": "FCVolumeSource",
    "fieldRef": "ObjectFieldSelector",
    "fileKeyRef": "FileKeySelector",
    "flexVolume": "FlexVolumeSource",
    "flocker": "FlockerVolumeSource",
    "gcePersistentDisk": "GCEPersistentDiskVolumeSource",
    "gitRepo": "GitRepoVolumeSource",
    "glusterfs": "GlusterfsVolumeSource",
    "grpc": "GRPCAction",
    "hostPath": "HostPathVolumeSource",
    "httpGet": "HTTPGetAction",
    "httpHeaders": "HTTPHeader",
    "image": "ImageVolumeSource",
    "iscsi": "ISCSIVolumeSource",
    "items": {
        "ConfigMapVolumeSource": "KeyToPath",
        "ConfigMapProjection": "KeyToPath",
        "SecretVolumeSource": "KeyToPath",
        "SecretProjection": "KeyToPath",
        "DownwardAPIVolumeSource": "DownwardAPIVolumeFile",
        "DownwardAPIProjection": "DownwardAPIVolumeFile",
    },
    "labelSelector": "LabelSelector",
    "lifecycle": "Lifecycle",
    "livenessProbe": "Probe",
    "matchExpressions": "LabelSelectorRequirement",
    "nfs": "NFSVolumeSource",
    "nodePublishSecretRef": "LocalObjectReference",
    "persistentVolumeClaim": "PersistentVolumeClaimVolumeSource",
    "photonPersistentDisk": "PhotonPersistentDiskVolumeSource",
    "podCertificate": "PodCertificateProjection",
    "ports": "ContainerPort",
    "portworxVolume": "PortworxVolumeSource",
    "postStart": "LifecycleHandler",
    "preStop": "LifecycleHandler",
    "projected": "ProjectedVolumeSource",
    "quobyte": "QuobyteVolumeSource",
    "rbd": "RBDVolumeSource",
    "readinessProbe": "Probe",
    "resizePolicy": "ContainerResizePolicy",
    "resourceFieldRef": "ResourceFieldSelector",
    "resources": {
        "Container": "ResourceRequirements",
        "PersistentVolumeClaimSpec": "VolumeResourceRequirements",
    },
    "restartPolicyRules": "ContainerRestartRule",
    "scaleIO": "ScaleIOVolumeSource",
    "seLinuxOptions": "SELinuxOptions",
    "seccompProfile": "SeccompProfile",
    "secret": {"Volume": "SecretVolumeSource", "VolumeProjection": "SecretProjection"},
    "secretKeyRef": "SecretKeySelector",
    "secretRef": {
        "EnvFromSource": "SecretEnvSource",
        "CephFSVolumeSource": "LocalObjectReference",
        "CinderVolumeSource": "LocalObjectReference",
        "FlexVolumeSource": "LocalObjectReference",
        "ISCSIVolumeSource": "LocalObjectReference",
        "RBDVolumeSource": "LocalObjectReference",
        "ScaleIOVolumeSource": "LocalObjectReference",
        "StorageOSVolumeSource": "LocalObjectReference",
    },
    "securityContext": "SecurityContext",
    "selector": "LabelSelector",
    "serviceAccountToken": "ServiceAccountTokenProjection",
    "sleep": "SleepAction",
    "sources": "VolumeProjection",
    "spec": {"PersistentVolumeClaimTemplate": "PersistentVolumeClaimSpec"},
    "startupProbe": "Probe",
    "storageos": "StorageOSVolumeSource",
    "tcpSocket": "TCPSocketAction",
    "valueFrom": "EnvVarSource",
    "volumeClaimTemplate": "PersistentVolumeClaimTemplate",
    "volumeDevices": "VolumeDevice",
    "volumeMounts": "VolumeMount",
    "vsphereVolume": "VsphereVirtualDiskVolumeSource",
    "windowsOptions": "WindowsSecurityContextOptions",
}

#: Patterns the schemas put on string values, by the scalar type that checks them.
PATTERN_TYPES = {QUANTITY_PATTERN: "Quantity"}

#: Python names where splitting the camelCase name at capitals reads badly.
SNAKE_OVERRIDES = {"targetWWNs": "target_wwns"}

#: Kubernetes schema markers carried into the CRD as they are (list/map merge semantics, nullable).
SCHEMA_MARKERS = ("nullable", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type")

_RESERVED = {"model_config", "model_fields", "copy", "dict", "json", "schema", "construct", "validate"}


class GeneratorError(Exception):
    """The schema holds something this generator will not guess about."""


@dataclass
class ModelDef:
    name: str
    schema: dict[str, Any]
    fields: list[str] = field(default_factory=list)
    depends: list[str] = field(default_factory=list)


def _strip(node: Any) -> Any:
    """A schema without its prose, for comparing two shapes."""
    if isinstance(node, dict):
        return {key: _strip(value) for key, value in node.items() if key != "description"}
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def _subtree(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        is_list = part.endswith("[]")
        node = node["properties"][part.removesuffix("[]")]
        if is_list:
            node = node["items"]
    return node


def snake(name: str) -> str:
    if name in SNAKE_OVERRIDES:
        return SNAKE_OVERRIDES[name]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _literal(value: Any) -> str:
    """A default as Python source, strings in double quotes like the rest of the code."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def to_camel(snake_name: str) -> str:
    # The same rule as pydantic.alias_generators.to_camel, which the Model base uses.
    head, *rest = snake_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Generator:
    def __init__(self) -> None:
        self.models: dict[str, ModelDef] = {}
        self.order: list[str] = []
        self.scalars: set[str] = set()
        self.needs_any = False
        self.constants: dict[str, dict[str, Any]] = {}

    def type_name(self, prop: str, parent: str) -> str:
        entry = TYPE_NAMES.get(prop)
        if isinstance(entry, dict):
            entry = entry.get(parent)
        if entry is None:
            raise GeneratorError(f"no Kubernetes type name for {parent}.{prop}; add it to TYPE_NAMES")
        return entry

    def model(self, name: str, schema: dict[str, Any]) -> str:
        shape = _strip(schema)
        if name in self.models:
            if _strip(self.models[name].schema) != shape:
                raise GeneratorError(f"{name} has two different shapes; name them apart in TYPE_NAMES")
            return name
        definition = ModelDef(name, schema)
        self.models[name] = definition
        required = set(schema.get("required", []))
        for prop, child in sorted(schema.get("properties", {}).items()):
            annotation = self.annotation(prop, child, name, definition)
            definition.fields.append(self.field_line(prop, annotation, child, prop in required))
        self.order.append(name)
        return name

    def annotation(self, prop: str, node: dict[str, Any], parent: str, owner: ModelDef) -> str:
        if node.get("x-kubernetes-int-or-string"):
            pattern = node.get("pattern")
            if pattern is None:
                self.scalars.add("IntOrString")
                return "IntOrString"
            if pattern not in PATTERN_TYPES:
                raise GeneratorError(f"{parent}.{prop}: unknown pattern {pattern!r}; add it to PATTERN_TYPES")
            self.scalars.add(PATTERN_TYPES[pattern])
            return PATTERN_TYPES[pattern]
        if "pattern" in node:
            raise GeneratorError(f"{parent}.{prop}: a pattern on a {node.get('type')} is not handled")
        kind = node.get("type")
        if kind == "string":
            if node.get("format") == "date-time":
                self.scalars.add("DateTime")
                return "DateTime"
            if "format" in node:
                raise GeneratorError(f"{parent}.{prop}: string format {node['format']!r} is not handled")
            return "str"
        if kind == "integer":
            formats = {None: "int", "int32": "Int32", "int64": "Int64"}
            if node.get("format") not in formats:
                raise GeneratorError(f"{parent}.{prop}: integer format {node['format']!r} is not handled")
            scalar = formats[node.get("format")]
            if scalar != "int":
                self.scalars.add(scalar)
            return scalar
        if kind == "boolean":
            return "bool"
        if kind == "number":
            return "float"
        if kind == "array":
            return f"list[{self.annotation(prop, node['items'], parent, owner)}]"
        if kind == "object":
            if "properties" in node:
                name = self.model(self.type_name(prop, parent), node)
                owner.depends.append(name)
                return name
            values = node.get("additionalProperties")
            if isinstance(values, dict):
                return f"dict[str, {self.annotation(prop, values, parent, owner)}]"
            self.needs_any = True
            return "dict[str, Any]"
        raise GeneratorError(f"{parent}.{prop}: schema type {kind!r} is not handled")

    def marker_constant(self, markers: dict[str, Any]) -> str:
        """A module constant per distinct marker set, so field lines stay short and readable."""
        parts = []
        if markers.get("nullable"):
            parts.append("NULLABLE")
        if markers.get("x-kubernetes-map-type"):
            parts.append(f"{markers['x-kubernetes-map-type'].upper()}_MAP")
        list_type = markers.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = "_".join(snake(key).upper() for key in markers.get("x-kubernetes-list-map-keys", []))
            parts.append(f"LIST_MAP_BY_{keys}")
        elif list_type:
            parts.append(f"{list_type.upper()}_LIST")
        name = "_AND_".join(parts)
        self.constants[name] = markers
        return name

    def field_line(self, prop: str, annotation: str, node: dict[str, Any], required: bool) -> str:
        name = snake(prop)
        if keyword.iskeyword(name) or name in _RESERVED or name.startswith("model_"):
            name += "_"
        arguments: list[str] = []
        if "default" in node:
            arguments.append(f"default={_literal(node['default'])}")
        elif not required:
            annotation = f"{annotation} | None"
            arguments.append("default=None")
        if to_camel(name) != prop:
            arguments.append(f"alias={json.dumps(prop)}")
        markers = {key: node[key] for key in SCHEMA_MARKERS if key in node}
        if markers:
            arguments.append(f"json_schema_extra={self.marker_constant(markers)}")
        if not arguments:
            return f"    {name}: {annotation}"
        if len(arguments) == 1 and arguments[0].startswith("default="):
            return f"    {name}: {annotation} = {arguments[0].removeprefix('default=')}"
        return f"    {name}: {annotation} = Field({', '.join(arguments)})"

    def render(self, sources: list[str]) -> str:
        class_markers = {
            name: self.marker_constant(markers)
            for name, model in self.models.items()
            if (markers := {key: model.schema[key] for key in SCHEMA_MARKERS if key in model.schema})
        }
        typing_names = ["Any"] if self.needs_any else []
        scalars = sorted(self.scalars)
        lines = [
            '"""Kubernetes core/v1 types embedded by Workflow, WorkflowNode and Schedule.',
            "",
            "GENERATED by tools/gen_k8s_core.py from the OpenAPI schemas of the reference CRDs:",
            *[f"    {source}" for source in sources],
            "Do not edit by hand; change the generator and run it again.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
        ]
        if typing_names:
            lines += [f"from typing import {', '.join(typing_names)}", ""]
        pydantic_names = []
        if any(key in model.schema for model in self.models.values() for key in SCHEMA_MARKERS):
            pydantic_names.append("ConfigDict")
        if any("Field(" in line for model in self.models.values() for line in model.fields):
            pydantic_names.append("Field")
        if pydantic_names:
            lines += [f"from pydantic import {', '.join(pydantic_names)}"]
        if self.constants:
            lines += ["from pydantic.config import JsonDict"]
        lines += [""]
        lines += ["from ..base import Model"]
        if scalars:
            lines += [f"from .scalars import {', '.join(scalars)}"]
        if self.constants:
            lines += ["", "# Kubernetes schema markers (list/map merge semantics) carried into the CRD."]
            for name, value in sorted(self.constants.items()):
                entries = [f"    {json.dumps(key)}: {json.dumps(item)}," for key, item in value.items()]
                lines += [f"{name}: JsonDict = {{", *entries, "}"]
        for name in self.order:
            model = self.models[name]
            lines += ["", "", f"class {name}(Model):", f'    """Kubernetes core/v1 {name}."""', ""]
            if name in class_markers:
                lines += [f"    model_config = ConfigDict(json_schema_extra={class_markers[name]})", ""]
            lines += model.fields or ["    pass"]
        return "\n".join(lines) + "\n"


def generate(crd_dir: Path) -> str:
    generator = Generator()
    sources = []
    for filename, path, name in ROOTS:
        crd = yaml.safe_load((crd_dir / filename).read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        generator.model(name, _subtree(schema, path))
        sources.append(f"{filename}: {path} → {name}")
    return generator.render(sources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crd-dir", type=Path, default=DEFAULT_CRD_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="only compare with the committed module")
    args = parser.parse_args(argv)
    try:
        text = generate(args.crd_dir)
    except GeneratorError as error:
        print(f"gen_k8s_core: {error}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale; run tools/gen_k8s_core.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    count = len(re.findall(r"^class ", text, flags=re.MULTILINE))
    print(f"wrote {args.output} ({count} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
