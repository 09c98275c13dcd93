"""build() and layout(): tiers from the cabling, rails, naming, mapped or reported hosts."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from volcano_topology_ibnetdiscover.build import DEFAULT_UNNAMED, BuildOptions, build, layout, switch_names
from volcano_topology_ibnetdiscover.parse import Fabric, Node, parse
from volcano_topology_ibnetdiscover.synthetic import connect, fat_tree, render, render_blocks

from volcano_topology.api import HyperNode
from volcano_topology.sdk import naming
from volcano_topology.sdk.hostnames import NodeNameMapping
from volcano_topology.tree import tree_problems

UNNAMED = [re.compile(p) for p in DEFAULT_UNNAMED]


def members(h: HyperNode) -> list[str]:
    return [m.selector.exact_match.name for m in h.spec.members if m.selector and m.selector.exact_match]


def by_name(hypernodes: list[HyperNode]) -> dict[str, HyperNode]:
    return {h.name: h for h in hypernodes}


def dumped(hypernodes: list[HyperNode]) -> list[dict[str, object]]:
    return [h.model_dump(mode="json", by_alias=True, exclude_none=True) for h in hypernodes]


def leaf_homes(hypernodes: list[HyperNode]) -> Counter[str]:
    return Counter(n for h in hypernodes if h.spec.tier == 1 for n in members(h))


# -- the real dump ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def director(director_text: str) -> Fabric:
    return parse(director_text)


def test_director_tiers_and_figures(director: Fabric) -> None:
    found = layout(director, NodeNameMapping())
    hypernodes = found.tree.build()
    assert tree_problems(by_name(hypernodes)) == []
    assert Counter(h.spec.tier for h in hypernodes) == {1: 151, 2: 8, 3: 1}
    assert {h.spec.tier: h.spec.tier_name for h in hypernodes} == {1: "leaf", 2: "spine", 3: "core"}
    # 154 switches with HCAs, 160 director line-card ASICs one hop up, 80 spine-card ASICs (+6 hostless leaves) two.
    assert Counter(found.distance.values()) == {0: 154, 1: 160, 2: 86}
    assert [found.names[g] for g in sorted(found.hostless_leaves, key=found.names.get)] == [
        "sat11-0101-0905-01ib0", "sat11-0101-0927-02ib0", "sat11-0101-0927-05ib0",
        "sat11-0101-0929-03ib0", "sat11-0101-0929-08ib0", "sat11-0101-0929-13ib0",
    ]  # fmt: skip
    assert found.gauges() == {
        "switches": 400, "leaf_switches": 154, "hosts": 280, "mapped_hosts": 280, "unmapped_hosts": 0,
        "excluded_hosts": 0, "unnamed_hca_ports": 103, "ignored_hcas": 0, "hostless_leaf_switches": 6,
        "unreached_switches": 0,
        "tiers": 3,
    }  # fmt: skip
    homes = leaf_homes(hypernodes)
    assert len(homes) == 280 and set(homes.values()) == {1}, "every mapped host in exactly one leaf"
    # Two UFM servers have their two HCAs on two leaves each: those leaves are rails of one another.
    assert found.rails == [
        ["sat11-0101-0904-01ib0", "sat11-0101-0904-02ib0"],
        ["sat11-0101-0902-01ib0", "sat11-0101-0902-02ib0"],
    ]
    sizes = Counter(len(members(h)) for h in hypernodes if h.spec.tier == 1)
    assert sizes == {1: 26, 2: 123, 4: 2}
    pods = [h for h in hypernodes if h.spec.tier == 2]
    assert sorted(len(members(p)) for p in pods) == [17, 18, 18, 19, 19, 20, 20, 20]
    (core,) = (h for h in hypernodes if h.spec.tier == 3)
    assert sorted(members(core)) == sorted(p.name for p in pods)


def test_director_unnamed_hcas_are_reported_not_invented(director: Fabric) -> None:
    found = layout(director, NodeNameMapping())
    assert len(found.unnamed) == 103
    assert {u.description for u in found.unnamed} == {"MT4123 ConnectX6   Mellanox Technologies"}
    first = found.unnamed[0]
    assert (first.switch, first.port) == ("sat11-0101-0901-09ib0", 1)
    nodes = {n for h in found.tree.build() for n in members(h)}
    assert not any(n.startswith("mt4123") for n in nodes)
    # The leaf whose 16 HCAs are all unnamed holds no known host, so it is not in the tree.
    assert Counter(u.switch for u in found.unnamed)["sat11-0101-0902-06ib0"] == 16
    assert "sat11-0101-0902-06ib0" not in by_name(found.tree.build())


def test_director_excluding_the_ufm_servers_drops_their_rails(director: Fabric) -> None:
    found = layout(director, NodeNameMapping(exclude=[".*ufm"]))
    hypernodes = found.tree.build()
    assert found.rails == [] and len(found.mapped.excluded) == 2
    assert Counter(h.spec.tier for h in hypernodes) == {1: 153, 2: 8, 3: 1}
    assert tree_problems(by_name(hypernodes)) == []


def test_director_unmapped_hosts_are_counted_and_left_out(director: Fabric) -> None:
    mapping = NodeNameMapping(regex=r"sat111(?P<row>09(0[1-4]))(?P<n>\d+)", template="gpu-{row}-{n}")
    found = layout(director, mapping)
    hypernodes = found.tree.build()
    assert found.gauges()["unmapped_hosts"] == len(found.mapped.unmapped) > 0
    assert all("does not match nodeNames.regex" in why for why in found.mapped.unmapped.values())
    homes = leaf_homes(hypernodes)
    assert set(homes) == set(found.mapped.nodes.values()) and set(homes.values()) == {1}
    assert all(re.fullmatch(r"gpu-090[1-4]-\d+", n) for n in homes)
    assert tree_problems(by_name(hypernodes)) == []


def test_director_names_are_stable_across_reordered_blocks(director_text: str) -> None:
    head, *blocks = director_text.split("\r\n\r\n")
    expected = dumped(build(parse(director_text), NodeNameMapping()).build())
    shuffled = blocks[:]
    random.Random(7).shuffle(shuffled)
    for order in (shuffled, blocks[::-1]):
        text = "\r\n\r\n".join([head, *order])
        assert dumped(build(parse(text), NodeNameMapping()).build()) == expected


def test_director_tiers_come_from_the_graph_not_the_names(director: Fabric, director_text: str) -> None:
    """Switch descriptions scrambled: the same tree shape, only the names differ."""
    expected = build(director, NodeNameMapping()).build()
    rng = random.Random(3)
    renamed = parse(director_text)  # a copy of its own: the module's fabric stays as parsed
    for node in renamed.switches:
        node.description = f"MF0;sw{rng.randrange(1 << 30):x}:QM/U1"
    scrambled = build(renamed, NodeNameMapping()).build()
    shape = [(h.spec.tier, len(h.spec.members)) for h in expected]
    assert sorted(shape) == sorted((h.spec.tier, len(h.spec.members)) for h in scrambled)
    leaves = {frozenset(members(h)) for h in expected if h.spec.tier == 1}
    assert leaves == {frozenset(members(h)) for h in scrambled if h.spec.tier == 1}


# -- made-up fabrics ----------------------------------------------------------------------------


def test_three_tiers_of_a_fat_tree() -> None:
    hypernodes = build(fat_tree(pods=2, leaves_per_pod=3, spines_per_pod=2, cores=2), NodeNameMapping()).build()
    tree = by_name(hypernodes)
    assert tree_problems(tree) == []
    assert [h.name for h in hypernodes if h.spec.tier == 1] == [f"leaf-{p}-{i}" for p in range(2) for i in range(3)]
    assert members(tree["leaf-1-2"]) == ["node-1-2-0", "node-1-2-1"]
    pods = [h for h in hypernodes if h.spec.tier == 2]
    assert [p.name.rsplit("-", 1)[0] for p in pods] == ["spine-0-0-x2", "spine-1-0-x2"]  # both spines of a pod, one
    assert [members(p) for p in pods] == [["leaf-0-0", "leaf-0-1", "leaf-0-2"], ["leaf-1-0", "leaf-1-1", "leaf-1-2"]]
    (top,) = (h for h in hypernodes if h.spec.tier == 3)
    assert sorted(members(top)) == sorted(p.name for p in pods)


def test_two_tiers_without_cores() -> None:
    hypernodes = build(fat_tree(pods=1, leaves_per_pod=2, cores=0), NodeNameMapping()).build()
    assert Counter(h.spec.tier for h in hypernodes) == {1: 2, 2: 1}


def test_rails_join_leaves_and_keep_each_node_in_one_leaf() -> None:
    found = layout(fat_tree(pods=1, leaves_per_pod=4, rails=2, cores=0), NodeNameMapping())
    hypernodes = found.tree.build()
    assert found.rails == [["leaf-0-0", "leaf-0-1"]] * 2 + [["leaf-0-2", "leaf-0-3"]] * 2
    leaves = [h for h in hypernodes if h.spec.tier == 1]
    assert [members(h) for h in leaves] == [["node-0-0-0", "node-0-0-1"], ["node-0-1-0", "node-0-1-1"]]
    assert set(leaf_homes(hypernodes).values()) == {1}
    assert tree_problems(by_name(hypernodes)) == []


def test_hostless_leaf_is_left_out_but_a_lone_top_is_not() -> None:
    fabric = fat_tree(pods=1, leaves_per_pod=2, spines_per_pod=2, cores=0)
    spines = [n for n in fabric.switches if n.description.startswith("MF0;spine")]
    empty = Node("switch", "00000000000000ee", 5, "MF0;leaf-empty:MQM8700/U1", 0)
    fabric.nodes[empty.guid] = empty
    for port, spine in enumerate(spines, 1):
        connect(empty, port, spine, 10)
    found = layout(fabric, NodeNameMapping())
    assert [found.names[g] for g in found.hostless_leaves] == ["leaf-empty"]
    assert "leaf-empty" not in by_name(found.tree.build())
    # The same switch cabled to one spine only of another pod's pair would still be a twin; a spine
    # above *two* groups is not.
    three = fat_tree(pods=2, leaves_per_pod=1, spines_per_pod=1, cores=1)
    assert layout(three, NodeNameMapping()).hostless_leaves == []


def test_sharp_aggregation_nodes_are_no_hosts() -> None:
    """A SHARP aggregation node (an HCA inside every switch) must not make spines and cores look like leaves."""
    plain = build(fat_tree(pods=2, cores=1), NodeNameMapping()).build()
    fabric = fat_tree(pods=2, cores=1)
    for index, switch in enumerate(list(fabric.switches)):
        an = Node("ca", f"00000000aa{index:06x}", 1, "Mellanox Technologies Aggregation Node", 0)
        fabric.nodes[an.guid] = an
        switch.ports += 1
        connect(switch, switch.ports, an, 1)
    found = layout(fabric, NodeNameMapping())
    assert found.ignored_hcas == len(fabric.switches) and found.gauges()["ignored_hcas"] == len(fabric.switches)
    assert dumped(found.tree.build()) == dumped(plain)
    assert found.unnamed == [] and found.mapped.unmapped == {}


def test_an_excluded_host_on_a_spine_leaves_it_a_spine() -> None:
    plain = dumped(build(fat_tree(pods=2, cores=1), NodeNameMapping()).build())
    fabric = fat_tree(pods=2, cores=1)
    spine = next(n for n in fabric.switches if n.description.startswith("MF0;spine"))
    core = next(n for n in fabric.switches if n.description.startswith("MF0;core"))
    for switch, guid in ((spine, "00000000bb000001"), (core, "00000000bb000002")):
        ufm = Node("ca", guid, 1, f"ufm-{guid[-1]} HCA-1", 0)
        fabric.nodes[ufm.guid] = ufm
        switch.ports += 1
        connect(switch, switch.ports, ufm, 1)
    found = layout(fabric, NodeNameMapping(exclude=["ufm-.*"]))
    assert dumped(found.tree.build()) == plain
    assert found.mapped.excluded == {"ufm-1", "ufm-2"}
    # Not excluded, a host makes its switch a leaf: the spine's host is in a leaf of its own.
    kept = by_name(build(fabric, NodeNameMapping()).build())
    assert tree_problems(kept) == []
    assert members(kept[found.names[spine.guid]]) == ["ufm-1"]


def test_switches_that_reach_no_leaf_are_left_out() -> None:
    fabric = fat_tree(pods=1, leaves_per_pod=1, cores=0)
    a = Node("switch", "00000000000000a1", 3, "MF0;island-a:MQM8700/U1", 0)
    b = Node("switch", "00000000000000b1", 3, "MF0;island-b:MQM8700/U1", 0)
    fabric.nodes.update({a.guid: a, b.guid: b})
    connect(a, 1, b, 1)
    found = layout(fabric, NodeNameMapping())
    assert found.unreached == [a.guid, b.guid] and found.gauges()["unreached_switches"] == 2
    assert not any(h.name.startswith("island") for h in found.tree.build())


def test_peer_links_at_one_tier_are_ignored() -> None:
    fabric = fat_tree(pods=1, leaves_per_pod=2, cores=0)
    leaf0, leaf1 = (n for n in fabric.switches if n.description.startswith("MF0;leaf"))
    connect(leaf0, 20, leaf1, 20)
    leaf0.ports = leaf1.ports = 20
    assert dumped(build(fabric, NodeNameMapping()).build()) == dumped(
        build(fat_tree(pods=1, leaves_per_pod=2, cores=0), NodeNameMapping()).build()
    )


def test_name_prefix_and_tier_names() -> None:
    options = BuildOptions(name_prefix="ib-", tier_names={1: "rack", 2: "pod"})
    hypernodes = build(fat_tree(pods=1, cores=0), NodeNameMapping(), options).build()
    assert all(h.name.startswith("ib-") for h in hypernodes)
    assert {h.spec.tier_name for h in hypernodes} == {"rack", "pod"}


# -- switch names -------------------------------------------------------------------------------


def named(*descriptions: str, prefix: int = 0) -> list[str]:
    nodes = {f"{i:016x}": Node("switch", f"{i:016x}", 2, d, 0) for i, d in enumerate(descriptions, 1)}
    names = switch_names(nodes, UNNAMED, prefix)
    return [names[g] for g in nodes]


def test_switch_names() -> None:
    assert named("MF0;sat11-0101-0927-20ib0:MQM8700/U1") == ["sat11-0101-0927-20ib0"]
    assert named("MF0;sat11-0101-0903-01ib1-A:MCS8500/L16/U2") == ["sat11-0101-0903-01ib1-a-l16-u2"]
    assert named("MF0;Core.DC1:MQM9790/U1", "plain name") == ["core-dc1", "plain-name"]
    assert named("Quantum Mellanox Technologies", "") == ["switch-0000000000000001", "switch-0000000000000002"]
    assert named("MF0;twin:MQM8700/U1", "MF0;twin:MQM8700/U1") == ["twin-0000000000000001", "twin-0000000000000002"]
    long = named("MF0;" + "x" * 80 + ":MQM8700/U1", prefix=10)
    assert len(long[0]) == naming.MAX_NAME - 10 and naming.usable("p" * 10 + long[0])
    assert named("twin-0000000000000002", "MF0;twin:M/U1", "MF0;twin:M/U1")[0] == "switch-0000000000000001"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=90), min_size=1, max_size=6), st.integers(min_value=0, max_value=20))
def test_switch_names_are_always_valid_and_unique(descriptions: list[str], prefix: int) -> None:
    names = named(*descriptions, prefix=prefix)
    assert len(set(names)) == len(names)
    for name in names:
        assert naming.sanitize(name) == name and naming.usable("p" * prefix + name), name


# -- properties over made-up fabrics ------------------------------------------------------------

SHAPES = st.fixed_dictionaries(
    {
        "pods": st.integers(1, 3),
        "leaves_per_pod": st.sampled_from([2, 4]),
        "spines_per_pod": st.integers(1, 3),
        "cores": st.integers(0, 2),
        "hosts_per_leaf": st.integers(1, 3),
        "rails": st.sampled_from([1, 2]),
    }
)


@settings(max_examples=40, deadline=None)
@given(SHAPES, st.randoms(use_true_random=False), st.booleans())
def test_reordered_blocks_give_the_same_hypernodes(shape: dict[str, int], rng: random.Random, crlf: bool) -> None:
    blocks = render_blocks(fat_tree(**shape), compact=crlf)
    expected = dumped(build(parse(render(blocks)), NodeNameMapping()).build())
    rng.shuffle(blocks)
    assert dumped(build(parse(render(blocks, crlf=crlf)), NodeNameMapping()).build()) == expected


@settings(max_examples=40, deadline=None)
@given(SHAPES)
def test_made_up_fabrics_build_strict_trees_with_every_host_in_one_leaf(shape: dict[str, int]) -> None:
    fabric = fat_tree(**shape)
    hypernodes = build(fabric, NodeNameMapping()).build()
    assert tree_problems(by_name(hypernodes)) == []
    homes = leaf_homes(hypernodes)
    hosts = {n.description.split()[0] for n in fabric.cas}
    assert set(homes) == hosts and set(homes.values()) == {1}
    # A core above a single pod is cabled like that pod's leaves (to its spines only): left out, losing
    # nothing, since it would hold exactly the pod's nodes.
    assert max(h.spec.tier for h in hypernodes) == (3 if shape["cores"] and shape["pods"] > 1 else 2)


def test_a_blank_description_names_no_host_even_when_unnamed_descriptions_omit_it() -> None:
    """`unnamedDescriptions: ["MT\\d+\\s.*"]` (no ""): a blank HCA description must not crash the scan."""
    fabric = fat_tree(pods=1, cores=1)
    leaf = next(n for n in fabric.switches if n.description.startswith("MF0;leaf"))
    blank = Node("ca", "00000000cc000001", 1, "   ", 0)
    fabric.nodes[blank.guid] = blank
    leaf.ports += 1
    connect(leaf, leaf.ports, blank, 1)
    found = layout(fabric, NodeNameMapping(), BuildOptions(unnamed=(r"MT\d+\s.*",)))
    assert [u.guid for u in found.unnamed] == [blank.guid]  # reported as a port with no host, not guessed
    assert tree_problems(by_name(found.tree.build())) == []
