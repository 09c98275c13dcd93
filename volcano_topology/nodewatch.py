"""The names and labels of every Node, kept by one paginated LIST and then a WATCH.

Providers that follow Node labels (``needs_nodes = True``) and the ``nodeCount`` status read
this view instead of listing Nodes. Only names and labels are kept (not whole Node bodies,
whose status and managedFields are large). The LIST/WATCH loop is the shared
:class:`~volcano_topology.reflector.Reflector`: it lists again only on 410 Gone. The
generation goes up once for every change that is visible in the view (a Node added,
deleted, or relabelled); status-only updates of a Node, which are most of the watch
traffic, change nothing and wake nobody.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kubernetes import client

from volcano_topology.reflector import Gone, Reflector

__all__ = ["Gone", "NodeCache", "NodeLabels"]

NodeLabels = Mapping[str, Mapping[str, str]]


class NodeCache(Reflector[Mapping[str, str]]):
    """Name -> labels of every Node; ``generation`` 0 until the first LIST is in, then bumped on each change."""

    what = "Nodes (names and labels)"

    def __init__(self, api: client.ApiClient, **options: Any) -> None:
        super().__init__(client.CoreV1Api(api).list_node, **options)
        self.api = api
        self._nodes: dict[str, Mapping[str, str]] = {}
        self._view: NodeLabels = MappingProxyType(self._nodes)

    def labels(self) -> NodeLabels:
        return self._view

    def convert(self, obj: dict[str, Any]) -> Mapping[str, str]:
        return MappingProxyType(dict((obj.get("metadata") or {}).get("labels") or {}))

    def replace(self, items: dict[str, Mapping[str, str]], resource_version: str) -> bool:
        if items == self._nodes and self.generation > 0:
            return False
        self._nodes.clear()
        self._nodes.update(items)
        return True

    def put(self, name: str, item: Mapping[str, str]) -> bool:
        if self._nodes.get(name) == item:
            return False  # a status-only update: nothing a provider or nodeCount looks at
        self._nodes[name] = item
        return True

    def delete(self, name: str, resource_version: str) -> bool:
        return self._nodes.pop(name, None) is not None
