"""volcano-topology: write Volcano HyperNodes from vendor topology providers.

The names a provider author uses are importable from here (``from volcano_topology import
Provider, Event, TreeBuilder``); docs/reference.md describes each one. They are loaded on
first use, so ``import volcano_topology`` imports nothing else (the CLI and the operator
import their submodules lazily on purpose).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
    from volcano_topology.problems import Problem
    from volcano_topology.provider import (
        CONTRACT_VERSION,
        ENTRY_POINT_GROUP,
        ApplyError,
        ClusterView,
        DeletionRefused,
        Event,
        EventType,
        InvalidHyperNode,
        MalformedEvent,
        OwnershipConflict,
        Provider,
        ProviderContext,
        Reply,
        RequestRejected,
        RetriesExhausted,
        SecretReader,
        TopologyViolation,
    )
    from volcano_topology.sdk.lifecycle import LifecycleProvider
    from volcano_topology.sdk.scanning import ScanningProvider, Topology, simple_provider
    from volcano_topology.sdk.tree import TreeBuilder, TreeError

# Public name -> the module that defines it.
_WHERE = {
    **dict.fromkeys(["HyperNode", "HyperNodeSpec", "Member", "ObjectMeta"], "volcano_topology.api"),
    "Problem": "volcano_topology.problems",
    **dict.fromkeys(
        [
            "CONTRACT_VERSION",
            "ENTRY_POINT_GROUP",
            "ApplyError",
            "ClusterView",
            "DeletionRefused",
            "Event",
            "EventType",
            "InvalidHyperNode",
            "MalformedEvent",
            "OwnershipConflict",
            "Provider",
            "ProviderContext",
            "Reply",
            "RequestRejected",
            "RetriesExhausted",
            "SecretReader",
            "TopologyViolation",
        ],
        "volcano_topology.provider",
    ),
    "LifecycleProvider": "volcano_topology.sdk.lifecycle",
    **dict.fromkeys(["ScanningProvider", "Topology", "simple_provider"], "volcano_topology.sdk.scanning"),
    **dict.fromkeys(["TreeBuilder", "TreeError"], "volcano_topology.sdk.tree"),
}

__all__ = [
    "CONTRACT_VERSION",
    "ENTRY_POINT_GROUP",
    "ApplyError",
    "ClusterView",
    "DeletionRefused",
    "Event",
    "EventType",
    "HyperNode",
    "HyperNodeSpec",
    "InvalidHyperNode",
    "LifecycleProvider",
    "MalformedEvent",
    "Member",
    "ObjectMeta",
    "OwnershipConflict",
    "Problem",
    "Provider",
    "ProviderContext",
    "Reply",
    "RequestRejected",
    "RetriesExhausted",
    "ScanningProvider",
    "SecretReader",
    "Topology",
    "TopologyViolation",
    "TreeBuilder",
    "TreeError",
    "simple_provider",
]

if not TYPE_CHECKING:  # type checkers see the imports above; an unknown name stays an error for them

    def __getattr__(name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module 'volcano_topology' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
