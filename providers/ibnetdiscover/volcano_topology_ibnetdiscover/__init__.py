"""HyperNodes from ``ibnetdiscover`` output: parse the dump, derive tiers from the cabling, build a strict tree."""

from volcano_topology_ibnetdiscover.parse import Fabric, Link, Node, ParseError, parse

__all__ = ["Fabric", "Link", "Node", "ParseError", "parse"]
