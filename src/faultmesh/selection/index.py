"""An index over pods so a selector touches only the pods that can match it.

Pods are kept sorted by (namespace, name) -- the order the API server lists them in -- so a
namespace is a contiguous range and every answer comes back in a stable order, whatever the
order of the dump. Label, node and phase postings narrow the candidates before the full
predicates run; selection over 10,000 pods then costs milliseconds (see ``bench/selection.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .objects import Pod


class PodIndex:
    """Pods by position, namespace, label (key and value), node and phase.

    Positions and namespace ranges are built at once; the postings for a label key, for
    nodes and for phases on first use, so a one-shot selection pays only for what it reads.
    """

    def __init__(self, pods: Iterable[Pod]):
        self.pods: tuple[Pod, ...] = tuple(sorted(pods, key=attrgetter("namespace", "name")))
        self._position: dict[tuple[str, str], int] = {}
        self._namespace_range: dict[str, range] = {}
        self._by_label: dict[str, dict[str, list[int]]] = {}
        self._by_node: dict[str, list[int]] | None = None
        self._by_phase: dict[str, list[int]] | None = None
        start = 0
        for position, pod in enumerate(self.pods):
            self._position[(pod.namespace, pod.name)] = position
            if pod.namespace != self.pods[start].namespace:
                self._namespace_range[self.pods[start].namespace] = range(start, position)
                start = position
        if self.pods:
            self._namespace_range[self.pods[start].namespace] = range(start, len(self.pods))

    def _postings(self, value_of: Callable[[Pod], str | None]) -> dict[str, list[int]]:
        postings: dict[str, list[int]] = {}
        for position, pod in enumerate(self.pods):
            value = value_of(pod)
            if value is not None:
                postings.setdefault(value, []).append(position)
        return postings

    def __len__(self) -> int:
        return len(self.pods)

    @property
    def everything(self) -> range:
        return range(len(self.pods))

    @property
    def namespaces(self) -> list[str]:
        """The namespaces that hold at least one pod, sorted."""
        return list(self._namespace_range)

    def position(self, namespace: str, name: str) -> int | None:
        return self._position.get((namespace, name))

    def in_namespace(self, namespace: str) -> range:
        return self._namespace_range.get(namespace, range(0))

    def with_label(self, key: str, values: Iterable[str]) -> set[int]:
        """Positions of pods whose label ``key`` holds one of ``values``."""
        postings = self._by_label.get(key)
        if postings is None:
            postings = self._by_label[key] = self._postings(lambda pod: pod.labels.get(key))
        found: set[int] = set()
        for value in values:
            found.update(postings.get(value, ()))
        return found

    def on_nodes(self, node_names: Iterable[str]) -> set[int]:
        if self._by_node is None:
            self._by_node = self._postings(attrgetter("node_name"))
        found: set[int] = set()
        for node_name in node_names:
            found.update(self._by_node.get(node_name, ()))
        return found

    def in_phases(self, phases: Iterable[str]) -> set[int]:
        if self._by_phase is None:
            self._by_phase = self._postings(attrgetter("phase"))
        found: set[int] = set()
        for phase in phases:
            found.update(self._by_phase.get(phase, ()))
        return found
