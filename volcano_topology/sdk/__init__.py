"""Helpers for provider authors: build a tree, return the topology, or take full control."""

from volcano_topology.sdk.hostnames import MappedHosts, NodeNameMapper, NodeNameMapping
from volcano_topology.sdk.lifecycle import LifecycleProvider
from volcano_topology.sdk.scanning import ScanningProvider, Topology, simple_provider
from volcano_topology.sdk.tree import TreeBuilder, TreeError

__all__ = [
    "LifecycleProvider",
    "MappedHosts",
    "NodeNameMapper",
    "NodeNameMapping",
    "ScanningProvider",
    "Topology",
    "TreeBuilder",
    "TreeError",
    "simple_provider",
]
