"""PodChaos actions done through the API server: pod-kill and pod-failure, as Chaos Mesh does them.

- **pod-kill** deletes the pod with the experiment's ``gracePeriod`` (0 deletes the object at once and lets the
  kubelet kill the containers). It has nothing to recover; its owner (a ReplicaSet, a StatefulSet) replaces it.
- **pod-failure** swaps the image of every container and init container for a pause image, so the kubelet
  restarts each container into something that does nothing. The original image of each container is saved in
  an annotation of the pod, under Chaos Mesh's key (:func:`image_annotation_key`), so Chaos Mesh, its dashboard
  and this controller recognise each other's saved images. Recovery puts the saved images back and removes the
  annotations.

Each swap is one JSON patch that writes the annotations and the images together, guarded by the resourceVersion
the plan was made from: a crash cannot leave a pause image without its saved original, and a pod changed
meanwhile is re-read and planned again. Both directions are idempotent: a container whose original is already
saved is not saved again (the saved value would be the pause image), and a pod without saved images is left
alone. A pod that is gone needs nothing more: for recovery it counts as recovered.

The controller watches pods, so a swap is first planned from the watched copy (its :func:`swap_basis`), without
reading the pod: one request per pod instead of two. The guard makes that safe: a copy the watch has not brought
up to date yet is refused (409), and the pod is then read and planned again as without a copy. A plan from the
copy that has nothing to do is checked against a fresh read too, so "unchanged" is only ever the server's answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .kube import PODS, Kube, KubeError

#: Chaos Mesh's default pause image (its controller setting ``POD_FAILURE_PAUSE_IMAGE``).
DEFAULT_PAUSE_IMAGE = "gcr.io/google-containers/pause:latest"
#: The environment variable Chaos Mesh's controller reads the pause image from; faultmesh reads the same.
PAUSE_IMAGE_ENV = "POD_FAILURE_PAUSE_IMAGE"
POD_FAILURE_ACTION = "pod-failure"
#: Chaos Mesh's prefix of the saved-image annotation keys.
ANNOTATION_PREFIX = "chaos-mesh"
#: The name part of an annotation key may be at most this long (a Kubernetes qualified name).
MAX_KEY_LENGTH = 63
#: How often a patch refused for a concurrent change is planned again before giving up.
CONFLICT_ATTEMPTS = 5


class Outcome(StrEnum):
    """What an action did to the pod."""

    #: The pod was deleted, or its images were swapped or restored.
    CHANGED = "changed"
    #: The pod already was as asked (a repeated call).
    UNCHANGED = "unchanged"
    #: The pod no longer exists (or was replaced by a namesake, when its uid was given).
    GONE = "gone"


def configured_pause_image(environ: Mapping[str, str] | None = None) -> str:
    """The pause image setting: ``$POD_FAILURE_PAUSE_IMAGE`` as in Chaos Mesh, else its default."""
    value = (os.environ if environ is None else environ).get(PAUSE_IMAGE_ENV, "").strip()
    return value or DEFAULT_PAUSE_IMAGE


def image_annotation_key(chaos_name: str, container: str, *, init: bool, action: str = POD_FAILURE_ACTION) -> str:
    """Chaos Mesh's annotation key for a container's saved image (``GenKeyForImage``).

    ``chaos-mesh-<chaos>-<action>-<container>-normal-image`` (``-init-image`` for an init container); when
    that is longer than an annotation name may be, just ``<container>-normal`` (``-init``), as Chaos Mesh does.
    """
    container_part = f"{container}-init" if init else f"{container}-normal"
    key = f"{ANNOTATION_PREFIX}-{chaos_name}-{action}-{container_part}-image"
    return container_part if len(key) > MAX_KEY_LENGTH else key


@dataclass(frozen=True)
class ImageChange:
    """A container's image (in a swap, its new one), at its index in ``spec.containers`` or ``spec.initContainers``."""

    init: bool
    index: int
    name: str
    image: str

    @property
    def path(self) -> str:
        return f"/spec/{'initContainers' if self.init else 'containers'}/{self.index}"


@dataclass(frozen=True)
class ImageSwap:
    """What one pod-failure patch changes: container images, and annotations to set (str) or remove (None)."""

    images: tuple[ImageChange, ...] = ()
    annotations: Mapping[str, str | None] | None = None

    @property
    def empty(self) -> bool:
        return not self.images and not self.annotations

    def operations(self, resource_version: str, has_annotations: bool) -> list[dict[str, Any]]:
        """The JSON patch: conditional on ``resource_version``, annotations first, each container named."""
        # Writing the resourceVersion we read makes the update conditional: a pod changed since is refused (409).
        ops: list[dict[str, Any]] = [{"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}]
        annotations = self.annotations or {}
        if not has_annotations and any(value is not None for value in annotations.values()):
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
        for key, value in annotations.items():
            path = f"/metadata/annotations/{_pointer_token(key)}"
            ops.append({"op": "remove", "path": path} if value is None else {"op": "add", "path": path, "value": value})
        for change in self.images:
            ops.append({"op": "test", "path": f"{change.path}/name", "value": change.name})
            ops.append({"op": "replace", "path": f"{change.path}/image", "value": change.image})
        return ops


def _pointer_token(key: str) -> str:
    """``key`` as one JSON Pointer token (RFC 6901): ``~`` and ``/`` escaped."""
    return key.replace("~", "~0").replace("/", "~1")


def _chosen_containers(
    pod: Mapping[str, Any], chaos_name: str, containers: Collection[str] | None
) -> Iterator[tuple[ImageChange, str]]:
    """Each container and init container (or those named) with its current image, and its saved-image key."""
    spec = pod.get("spec") or {}
    for init, listed in ((False, spec.get("containers")), (True, spec.get("initContainers"))):
        for index, container in enumerate(listed or ()):
            name = str(container.get("name") or "")
            if containers is None or name in containers:
                current = ImageChange(init, index, name, str(container.get("image") or ""))
                yield current, image_annotation_key(chaos_name, name, init=init)


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return (pod.get("metadata") or {}).get("annotations") or {}


def plan_failure(
    pod: Mapping[str, Any], chaos_name: str, pause_image: str, containers: Collection[str] | None = None
) -> ImageSwap:
    """The swap that puts ``pause_image`` in every container (or those named), saving originals not yet saved.

    A container whose original is saved already keeps that saved value: saving again would record the
    pause image as the original. ``containers=None`` is every container and init container, as Chaos Mesh
    does for pod-failure.
    """
    annotations = _annotations(pod)
    images: list[ImageChange] = []
    saved: dict[str, str | None] = {}
    for current, key in _chosen_containers(pod, chaos_name, containers):
        if key not in annotations:
            saved[key] = current.image
        if current.image != pause_image:
            images.append(replace(current, image=pause_image))
    return ImageSwap(tuple(images), saved)


def plan_restore(pod: Mapping[str, Any], chaos_name: str, containers: Collection[str] | None = None) -> ImageSwap:
    """The swap that puts every saved original image back (or those of the named containers) and drops its key."""
    annotations = _annotations(pod)
    images: list[ImageChange] = []
    removed: dict[str, str | None] = {}
    for current, key in _chosen_containers(pod, chaos_name, containers):
        if key not in annotations:
            continue
        removed[key] = None
        if current.image != annotations[key]:
            images.append(replace(current, image=str(annotations[key])))
    return ImageSwap(tuple(images), removed)


def swap_basis(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod that planning and guarding a swap read: identity, resourceVersion, annotations, images.

    What the pod index keeps of each watched pod (the whole object would cost memory for nothing); planning
    from it gives the same swap as planning from the pod.
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    basis: dict[str, Any] = {
        "metadata": {key: metadata[key] for key in ("namespace", "name", "uid", "resourceVersion", "annotations")
                     if key in metadata},
        "spec": {},
    }
    for listing in ("containers", "initContainers"):
        if listing in spec:
            basis["spec"][listing] = [{key: c[key] for key in ("name", "image") if key in c}
                                      for c in spec[listing] or ()]
    return basis


async def _read_pod(kube: Kube, namespace: str, name: str, uid: str | None) -> dict[str, Any] | None:
    """The pod, or None when it is gone (or ``uid`` is given and the pod of that name is another one)."""
    try:
        pod = await kube.get(PODS, name, namespace)
    except KubeError as error:
        if error.status == 404:
            return None
        raise
    if uid is not None and (pod.get("metadata") or {}).get("uid") != uid:
        return None
    return pod


async def kill_pod(
    kube: Kube, namespace: str, name: str, grace_period: int | None, *, uid: str | None = None
) -> Outcome:
    """Delete the pod with ``grace_period`` seconds (None: the pod's own); a pod already gone is fine.

    With ``uid``, only that pod is deleted: a namesake created since (a StatefulSet's replacement) is left.
    """
    if grace_period is not None and grace_period < 0:
        raise ValueError(f"grace period {grace_period} must be 0 or more seconds")
    try:
        answer = await kube.delete(PODS, name, namespace, grace_period_seconds=grace_period, uid=uid, missing_ok=True)
    except KubeError as error:
        if uid is not None and error.status == 409:  # the uid precondition failed: the pod we meant is gone
            return Outcome.GONE
        raise
    return Outcome.GONE if answer is None else Outcome.CHANGED


async def fail_pod(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    chaos_name: str,
    pause_image: str = DEFAULT_PAUSE_IMAGE,
    containers: Collection[str] | None = None,
    uid: str | None = None,
    watched: Mapping[str, Any] | None = None,
) -> Outcome:
    """Swap the pod's images for ``pause_image``, saving the originals under ``chaos_name``'s annotation keys.

    ``watched`` is the pod as a watch last saw it (at least its :func:`swap_basis`); the first plan is made
    from it, and the pod is read only when that copy turns out stale, or has nothing to do.
    """
    return await _swap(kube, namespace, name, uid, watched, "swap the images of",
                       lambda pod: plan_failure(pod, chaos_name, pause_image, containers))


async def restore_pod(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    chaos_name: str,
    containers: Collection[str] | None = None,
    uid: str | None = None,
    watched: Mapping[str, Any] | None = None,
) -> Outcome:
    """Put back the images ``chaos_name`` saved and remove their annotations; a pod gone counts as recovered.

    ``watched`` as for :func:`fail_pod`.
    """
    return await _swap(kube, namespace, name, uid, watched, "restore the images of",
                       lambda pod: plan_restore(pod, chaos_name, containers))


async def _swap(
    kube: Kube,
    namespace: str,
    name: str,
    uid: str | None,
    watched: Mapping[str, Any] | None,
    what: str,
    plan: Callable[[Mapping[str, Any]], ImageSwap],
) -> Outcome:
    if watched is not None and (uid is None or (watched.get("metadata") or {}).get("uid") == uid):
        swap = plan(watched)
        # Nothing to do, or a 409 (the watch is behind): both are settled by reading the pod, as below.
        if not swap.empty and (outcome := await _patch(kube, namespace, name, watched, swap)) is not None:
            return outcome
    for _ in range(CONFLICT_ATTEMPTS):
        pod = await _read_pod(kube, namespace, name, uid)
        if pod is None:
            return Outcome.GONE
        swap = plan(pod)
        if swap.empty:
            return Outcome.UNCHANGED
        outcome = await _patch(kube, namespace, name, pod, swap)
        if outcome is not None:
            return outcome
    raise KubeError(
        f"{what} pod {namespace}/{name}: the pod changed {CONFLICT_ATTEMPTS} times while being patched; "
        "will try again",
        status=409,
    )


async def _patch(kube: Kube, namespace: str, name: str, pod: Mapping[str, Any], swap: ImageSwap) -> Outcome | None:
    """Apply ``swap``, planned from ``pod``, guarded by its resourceVersion; None when the pod changed since (409)."""
    metadata = pod.get("metadata") or {}
    has_annotations = isinstance(metadata.get("annotations"), dict)
    operations = swap.operations(str(metadata.get("resourceVersion") or ""), has_annotations)
    try:
        await kube.json_patch(PODS, name, operations, namespace)
    except KubeError as error:
        if error.status == 404:
            return Outcome.GONE
        if error.status == 409:
            return None
        raise
    return Outcome.CHANGED
