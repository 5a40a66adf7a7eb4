"""AWSChaos, GCPChaos and AzureChaos: wire names, per-action rules, one-shot actions, SDK use."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from faultmesh.api.awschaos import AWSChaos, AWSChaosSpec
from faultmesh.api.azurechaos import AzureChaos, AzureChaosSpec
from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.crd import crd_for
from faultmesh.api.gcpchaos import GCPChaos, GCPChaosSpec, GCPChaosStatus
from faultmesh.api.loader import ManifestError, load_text, validate_object


def _manifest(kind: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    )


def _problems(kind: str, spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(_manifest(kind, spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


AWS = {"awsRegion": "us-east-1", "ec2Instance": "i-0123456789abcdef0"}
GCP = {"project": "p", "zone": "us-central1-a", "instance": "node-1"}
AZURE = {"subscriptionID": "sub", "resourceGroupName": "rg", "vmName": "vm-1"}


# --- AWSChaos -------------------------------------------------------------------------------


def test_aws_sdk_round_trip_uses_chaos_mesh_wire_names() -> None:
    chaos = AWSChaos(
        metadata=ObjectMeta(name="detach", namespace="ops"),
        spec=AWSChaosSpec(
            action="detach-volume",
            aws_region="eu-west-1",
            ec2_instance="i-1",
            volume_id="vol-1",
            device_name="/dev/sdf",
            secret_name="aws-creds",
            duration="5m",
        ),
    )
    assert validate_object(chaos) == []
    dumped = chaos.to_dict()
    assert dumped["kind"] == "AWSChaos"
    assert dumped["spec"] == {
        "action": "detach-volume",
        "awsRegion": "eu-west-1",
        "ec2Instance": "i-1",
        "volumeID": "vol-1",
        "deviceName": "/dev/sdf",
        "secretName": "aws-creds",
        "duration": "5m",
    }
    again = load_text(yaml.safe_dump(dumped)).objects[0]
    assert isinstance(again, AWSChaos)
    assert again.to_dict() == dumped


def test_aws_detach_volume_needs_volume_and_device() -> None:
    problems = _problems("AWSChaos", {**AWS, "action": "detach-volume"})
    assert problems == {
        "spec.volumeID": "is required with action detach-volume",
        "spec.deviceName": "is required with action detach-volume",
    }


@pytest.mark.parametrize("action", ["ec2-stop", "ec2-restart"])
def test_aws_instance_actions_need_no_volume(action: str) -> None:
    chaos = load_text(_manifest("AWSChaos", {**AWS, "action": action})).objects[0]
    assert isinstance(chaos, AWSChaos)
    assert chaos.spec.volume_id is None


def test_aws_refuses_empty_identity_and_unknown_action() -> None:
    problems = _problems("AWSChaos", {**AWS, "awsRegion": "", "action": "ec2-stop"})
    assert problems == {"spec.awsRegion": "must not be empty"}
    problems = _problems("AWSChaos", {**AWS, "action": "ec2-reboot"})
    assert problems["spec.action"].startswith('"ec2-reboot" is not one of')


def test_aws_required_fields_and_bad_duration() -> None:
    problems = _problems("AWSChaos", {"action": "ec2-stop", "duration": "soon"})
    assert problems["spec.awsRegion"] == "is required"
    assert problems["spec.ec2Instance"] == "is required"
    assert "is not a duration" in problems["spec.duration"]


def test_aws_empty_duration_means_unset() -> None:
    chaos = load_text(_manifest("AWSChaos", {**AWS, "action": "ec2-stop", "duration": ""})).objects[0]
    assert isinstance(chaos, AWSChaos)
    assert chaos.spec.duration == ""


def test_one_shot_actions() -> None:
    assert AWSChaos(metadata=ObjectMeta(name="a"), spec=AWSChaosSpec(action="ec2-restart", **AWS)).is_one_shot()
    assert not AWSChaos(metadata=ObjectMeta(name="a"), spec=AWSChaosSpec(action="ec2-stop", **AWS)).is_one_shot()
    assert GCPChaos(metadata=ObjectMeta(name="g"), spec=GCPChaosSpec(action="node-reset", **GCP)).is_one_shot()
    assert not GCPChaos(metadata=ObjectMeta(name="g"), spec=GCPChaosSpec(action="node-stop", **GCP)).is_one_shot()
    assert AzureChaos(metadata=ObjectMeta(name="z"), spec=AzureChaosSpec(action="vm-restart", **AZURE)).is_one_shot()
    assert not AzureChaos(metadata=ObjectMeta(name="z"), spec=AzureChaosSpec(action="vm-stop", **AZURE)).is_one_shot()


def test_aws_status_round_trips() -> None:
    status = {
        "conditions": [{"type": "AllInjected", "status": "True"}],
        "experiment": {
            "desiredPhase": "Run",
            "containerRecords": [
                {
                    "id": '{"awsRegion":"us-east-1","ec2Instance":"i-1"}',
                    "selectorKey": ".",
                    "phase": "Injected",
                    "injectedCount": 1,
                    "recoveredCount": 0,
                    "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2024-01-01T00:00:00Z"}],
                }
            ],
        },
    }
    document = yaml.safe_load(_manifest("AWSChaos", {**AWS, "action": "ec2-stop"}))
    document["status"] = status
    chaos = load_text(yaml.safe_dump(document)).objects[0]
    assert chaos.to_dict()["status"] == status


def test_cloud_crds_have_action_and_duration_columns() -> None:
    for cls in (AWSChaos, GCPChaos, AzureChaos):
        version = crd_for(cls)["spec"]["versions"][0]
        columns = [(column["name"], column["jsonPath"]) for column in version["additionalPrinterColumns"]]
        assert columns == [("action", ".spec.action"), ("duration", ".spec.duration")]
        assert crd_for(cls)["spec"]["scope"] == "Namespaced"
        # As in Chaos Mesh: no status subresource, status is written with the object.
        assert version["subresources"] == {}


# --- GCPChaos -------------------------------------------------------------------------------


@pytest.mark.parametrize("device_names", [None, []])
def test_gcp_disk_loss_needs_device_names(device_names: list[str] | None) -> None:
    spec: dict[str, Any] = {**GCP, "action": "disk-loss"}
    if device_names is not None:
        spec["deviceNames"] = device_names
    problems = _problems("GCPChaos", spec)
    assert problems == {"spec.deviceNames": "needs at least one device name with action disk-loss"}


def test_gcp_disk_loss_with_devices_is_valid_and_empty_name_is_not() -> None:
    chaos = load_text(_manifest("GCPChaos", {**GCP, "action": "disk-loss", "deviceNames": ["sdb"]})).objects[0]
    assert isinstance(chaos, GCPChaos)
    assert chaos.spec.device_names == ["sdb"]
    problems = _problems("GCPChaos", {**GCP, "action": "disk-loss", "deviceNames": ["sdb", ""]})
    assert problems == {"spec.deviceNames[1]": "must not be empty"}


def test_gcp_identity_fields_must_not_be_empty() -> None:
    problems = _problems("GCPChaos", {**GCP, "zone": "", "instance": "", "action": "node-stop"})
    assert problems == {"spec.zone": "must not be empty", "spec.instance": "must not be empty"}


def test_gcp_status_keeps_attached_disks() -> None:
    status = GCPChaosStatus.model_validate(
        {"experiment": {}, "attachedDiskStrings": ['{"deviceName":"sdb","source":"disk-1"}']}
    )
    assert status.attached_disk_strings == ['{"deviceName":"sdb","source":"disk-1"}']
    assert status.to_dict()["attachedDiskStrings"] == status.attached_disk_strings


# --- AzureChaos -----------------------------------------------------------------------------


def test_azure_disk_detach_needs_disk_name_and_lun() -> None:
    problems = _problems("AzureChaos", {**AZURE, "action": "disk-detach"})
    assert problems == {
        "spec.diskName": "is required with action disk-detach",
        "spec.lun": "is required with action disk-detach",
    }


def test_azure_lun_zero_is_a_lun_and_negative_is_not() -> None:
    chaos = load_text(
        _manifest("AzureChaos", {**AZURE, "action": "disk-detach", "diskName": "data", "lun": 0})
    ).objects[0]
    assert isinstance(chaos, AzureChaos)
    assert chaos.spec.lun == 0
    problems = _problems("AzureChaos", {**AZURE, "action": "disk-detach", "diskName": "data", "lun": -1})
    assert problems == {"spec.lun": "-1 is not a LUN; it must be ≥ 0"}


def test_azure_wire_names_and_did_you_mean() -> None:
    chaos = AzureChaos(
        metadata=ObjectMeta(name="z", namespace="default"),
        spec=AzureChaosSpec(action="vm-stop", subscription_id="s", resource_group_name="rg", vm_name="vm"),
    )
    assert validate_object(chaos) == []
    assert chaos.to_dict()["spec"] == {
        "action": "vm-stop",
        "subscriptionID": "s",
        "resourceGroupName": "rg",
        "vmName": "vm",
    }
    problems = _problems("AzureChaos", {**AZURE, "action": "vm-stop", "vmname": "vm"})
    assert problems["spec.vmname"] == 'unknown field; did you mean "vmName"?'
