"""The names and labels of every Node, kept by one paginated LIST and then a WATCH.

Providers that follow Node labels (``needs_nodes = True``) and the ``nodeCount`` status read
this view instead of listing Nodes. Only names and labels are kept (not whole Node bodies,
whose status and managedFields are large). The LIST/WATCH loop is the shared
:class:`~volcano_topology.reflector.Reflector`: it lists again only on 410 Gone. The
generation goes up once for every change that is visible in the view (a Node added,
deleted, or relabelled); status-only updates of a Node, which are most of the watch
traffic, change nothing and wake nobody.

Beside the generation the view records *what* changed, so a reader can tell whether a change
concerns it: the generation at which the set of names last changed (a Node added or deleted)
and, per label key, the generation at which any Node's value of that key last changed.
``nodeCount`` uses these to recount only the HyperNodes whose selectors read what changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kubernetes import client

from volcano_topology.reflector import Gone, Reflector

__all__ = ["Changes", "Gone", "NodeCache", "NodeLabels"]

NodeLabels = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Changes:
    """What changed in the view after some generation: the set of names, and these label keys."""

    names: bool
    keys: frozenset[str]

    def __bool__(self) -> bool:
        return self.names or bool(self.keys)


class NodeCache(Reflector[Mapping[str, str]]):
    """Name -> labels of every Node; ``generation`` 0 until the first LIST is in, then bumped on each change."""

    what = "Nodes (names and labels)"

    def __init__(self, api: client.ApiClient, **options: Any) -> None:
        super().__init__(client.CoreV1Api(api).list_node, **options)
        self.api = api
        self._nodes: dict[str, Mapping[str, str]] = {}
        self._view: NodeLabels = MappingProxyType(self._nodes)
        self.names_generation = 0
        self._key_generations: dict[str, int] = {}

    def labels(self) -> NodeLabels:
        return self._view

    def inputs_version(self, names: bool, keys: Iterable[str]) -> tuple[int, ...]:
        """A version of just what a reader looks at: it moves only when those inputs changed."""
        return (self.names_generation if names else 0, *(self._key_generations.get(k, 0) for k in sorted(keys)))

    def changes_since(self, generation: int) -> Changes:
        """What changed after ``generation`` (0: before the first LIST, so everything)."""
        keys = frozenset(k for k, g in self._key_generations.items() if g > generation)
        return Changes(names=self.names_generation > generation, keys=keys)

    def convert(self, obj: dict[str, Any]) -> Mapping[str, str]:
        return MappingProxyType(dict((obj.get("metadata") or {}).get("labels") or {}))

    def replace(self, items: dict[str, Mapping[str, str]], resource_version: str) -> bool:
        if items == self._nodes and self.generation > 0:
            return False
        stamp = self.generation + 1  # the generation this change becomes (the reflector bumps after True)
        if items.keys() != self._nodes.keys() or self.generation == 0:
            self.names_generation = stamp
        for name in items.keys() | self._nodes.keys():
            self._stamp_keys(self._nodes.get(name), items.get(name), stamp)
        self._nodes.clear()
        self._nodes.update(items)
        return True

    def put(self, name: str, item: Mapping[str, str]) -> bool:
        old = self._nodes.get(name)
        if old == item:
            return False  # a status-only update: nothing a provider or nodeCount looks at
        stamp = self.generation + 1
        if old is None:
            self.names_generation = stamp
        self._stamp_keys(old, item, stamp)
        self._nodes[name] = item
        return True

    def delete(self, name: str, resource_version: str) -> bool:
        old = self._nodes.pop(name, None)
        if old is None:
            return False
        stamp = self.generation + 1
        self.names_generation = stamp
        self._stamp_keys(old, None, stamp)
        return True

    def _stamp_keys(self, old: Mapping[str, str] | None, new: Mapping[str, str] | None, stamp: int) -> None:
        old, new = old or {}, new or {}
        for key in old.keys() | new.keys():
            if old.get(key) != new.get(key):
                self._key_generations[key] = stamp
