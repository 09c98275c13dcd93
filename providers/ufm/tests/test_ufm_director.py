"""A real fabric (shared/fixtures/ibnetdiscover/director.txt, 400 switches, 8 rails per host) as UFM would answer it.

The dump is read with the sibling ibnetdiscover provider's parser and turned into UFM's three
answers: one system per chassis (``sysimgguid``: a director's 60 ASICs are one system, as in
UFM), hosts named by their node description, and the ~200 adapters that never got a
description left without a host name, as UFM shows them.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from typing import Any

from ufm_testlib import FIXTURES, UFMAnswers
from volcano_topology_ufm.build import build_tree
from volcano_topology_ufm.parse import check_complete, parse_fabric
from volcano_topology_ufm.settings import UFMSettings

from volcano_topology.api import HyperNode
from volcano_topology.testing import assert_strict_tree

# Installed with every built-in provider; the package exports a parse() function of the same name.
ib = importlib.import_module("volcano_topology_ibnetdiscover.parse")
DIRECTOR = FIXTURES / "ibnetdiscover" / "director.txt"


def switch_name(description: str) -> str:
    """``MF0;sat11-0101-0901-01ib1-A:CS8500/L01/U1`` -> ``sat11-0101-0901-01ib1-A``."""
    return description.removeprefix("MF0;").split(":", 1)[0]


def director_answers() -> tuple[UFMAnswers, Any]:
    fabric = ib.parse(DIRECTOR.read_bytes().decode())
    chassis = {n.guid: n.sysimgguid or n.guid for n in fabric.switches}
    systems: dict[str, dict[str, Any]] = {}
    for node in sorted(fabric.switches, key=lambda n: n.guid):
        system = systems.setdefault(chassis[node.guid], {
            "guid": chassis[node.guid], "system_guid": chassis[node.guid], "name": chassis[node.guid],
            "system_name": switch_name(node.description), "type": "switch", "ports": [],
        })  # fmt: skip
        system["ports"] += [f"{node.guid}_{port}" for port in sorted(node.links)]
    ports: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for node in sorted(fabric.cas, key=lambda n: n.guid):
        for port, link in sorted(node.links.items()):
            peer = fabric.nodes[link.peer]
            ports.append({
                "description": "Computer IB Port", "guid": node.guid, "name": f"{node.guid}_{port}", "tier": 1,
                "node_description": node.description, "peer_guid": link.peer, "peer_node_guid": link.peer,
                "peer_node_name": switch_name(peer.description), "systemID": node.sysimgguid or node.guid,
            })  # fmt: skip
    for node in sorted(fabric.switches, key=lambda n: n.guid):
        for port, link in sorted(node.links.items()):
            if link.peer_kind == "switch" and (node.guid, port) < (link.peer, link.peer_port):
                links.append({"source_guid": node.guid, "source_port": str(port), "destination_guid": link.peer,
                              "destination_port": str(link.peer_port)})  # fmt: skip
    return UFMAnswers(ports, links, list(systems.values())), fabric


def test_the_director_fabric_builds_a_strict_tree_of_every_tier() -> None:
    answers, fabric = director_answers()
    parsed = parse_fabric(answers.ports, answers.links, answers.systems)
    check_complete(parsed)
    built = build_tree(parsed, UFMSettings(endpoint="ufm"))
    hypernodes = {h.name: h for h in built.tree.build()}
    assert_strict_tree(hypernodes)
    named = {ca.description.split()[0] for ca in fabric.cas if not ca.description.startswith("MT")}
    assert built.node_count == len(named) and not built.hosts.unmapped
    unnamed_ports = sum(len(ca.links) for ca in fabric.cas if ca.description.startswith("MT"))
    assert parsed.skipped["host port without a host name"] == unnamed_ports > 100
    homes: dict[str, list[str]] = defaultdict(list)
    for hn in hypernodes.values():
        for member in hn.members:
            if member.type == "Node" and member.selector and member.selector.exact_match:
                homes[member.selector.exact_match.name].append(hn.name)
    assert sorted(homes) == sorted(h.lower() for h in named)
    assert all(len(v) == 1 for v in homes.values())  # 8 rails per host, one leaf each
    by_tier: dict[int, list[str]] = defaultdict(list)
    for name, hn in sorted(hypernodes.items()):
        by_tier[hn.spec.tier if hn.spec else 0].append(name)
    assert sorted(by_tier) == [1, 2]  # leaves under the directors, whose 60 ASICs each are one system
    assert len(by_tier[1]) == 151
    (top,) = by_tier[2]
    assert "-x4-" in top  # the four director chassis, joined (every leaf is cabled to all four)
    # Six leaves have no host port at all: left out, never mistaken for a third tier above the directors.
    assert len(built.hostless) == 6


def test_same_leaves_as_the_ibnetdiscover_provider() -> None:
    """Two independent readings of one fabric (UFM-shaped JSON here, the raw dump there) agree on the leaves."""
    build = importlib.import_module("volcano_topology_ibnetdiscover.build")

    from volcano_topology.sdk.hostnames import NodeNameMapping

    answers, fabric = director_answers()
    parsed = parse_fabric(answers.ports, answers.links, answers.systems)
    ours = build_tree(parsed, UFMSettings(endpoint="ufm")).tree.build()
    theirs = build.build(fabric, NodeNameMapping()).build()
    assert leaf_sets(ours) == leaf_sets(theirs)


def leaf_sets(hypernodes: list[HyperNode]) -> set[frozenset[str]]:
    return {
        frozenset(m.selector.exact_match.name for m in h.members if m.selector and m.selector.exact_match)
        for h in hypernodes
        if h.spec is not None and h.spec.tier == 1
    }
