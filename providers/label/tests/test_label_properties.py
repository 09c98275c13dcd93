"""Invariants of the build over generated clusters: a strict tree always, stable names, one HyperNode per path."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from volcano_topology_label import LabelSettings, analyse

from volcano_topology.sdk import naming
from volcano_topology.tree import tree_problems

HOST = {"nodeLabel": "kubernetes.io/hostname"}
# Two generations whose types share label keys (mixed depth), plus a type of its own.
TYPES = {
    "deep": [{"nodeLabel": "spine"}, {"nodeLabel": "block"}, {"nodeLabel": "leaf"}, HOST],
    "flat": [{"nodeLabel": "block"}, {"nodeLabel": "leaf"}, HOST],
    "TorX": [{"nodeLabel": "example.com/tor"}, HOST],
    # Volcano's profile form: nodes labelled gen=g1 belong to it, whatever else they carry.
    "prof": {"nodeSelector": {"matchLabels": {"gen": "g1"}}, "levels": [{"nodeLabel": "block"}, HOST]},
}
KEYS = ["spine", "block", "leaf", "example.com/tor"]


def label_set(values: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    # Each key present or not, so nodes miss levels, carry several types, or none.
    tiers = st.dictionaries(st.sampled_from(KEYS), values, max_size=len(KEYS))
    generation = st.sampled_from([{}, {"gen": "g1"}, {"gen": "g2"}])
    return st.builds(lambda labels, gen: {**labels, **gen}, tiers, generation)


BASE_VALUES = st.sampled_from(["a", "b", "c", "A", "a.b", "x-y", "1"])
OTHER_VALUES = st.sampled_from(["p", "q", "r-s", "P"])  # never the readable name of a base value


def clusters(values: st.SearchStrategy[str], prefix: str, max_size: int = 40) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.integers(0, 200).map(lambda i: f"{prefix}{i}"), label_set(values), max_size=max_size)


POLICY = st.sampled_from(["skip", "attachAbove"])


def config(policy: str) -> LabelSettings:
    return LabelSettings.model_validate({"networkTopologyTypes": TYPES, "missingLabels": policy})


@given(clusters(st.one_of(BASE_VALUES, OTHER_VALUES), "n", 60), POLICY)
@settings(max_examples=150, deadline=None)
def test_always_a_strict_tree_with_every_placed_node_in_exactly_one_leaf(nodes: dict[str, Any], policy: str) -> None:
    built = analyse(nodes, config(policy))
    found = {h.name: h for h in built.hypernodes}
    assert len(found) == len(built.hypernodes)
    assert tree_problems(found) == []
    assert all(naming.usable(name) for name in found)
    homes = [m.selector.exact_match.name for h in built.hypernodes for m in h.members
             if m.type == "Node" and m.selector and m.selector.exact_match]  # fmt: skip
    assert sorted(homes) == sorted(built.placed)  # each placed node once, nobody else
    assert set(built.placed) | built.skipped | built.outside | built.invalid_names == set(nodes)
    if policy == "skip":
        assert built.skipped == built.missing_level


@given(clusters(BASE_VALUES, "n"), clusters(OTHER_VALUES, "m"), POLICY)
@settings(max_examples=150, deadline=None)
def test_names_stay_when_unrelated_nodes_come_and_go(base: dict[str, Any], more: dict[str, Any], policy: str) -> None:
    alone = analyse(base, config(policy)).names
    together = analyse({**base, **more}, config(policy)).names
    # Adding the other nodes renames nothing (and removing them again gives back the same names).
    assert {path: together[path] for path in alone} == alone


@given(clusters(BASE_VALUES, "n", 60), POLICY)
@settings(max_examples=100, deadline=None)
def test_one_hypernode_per_label_path_so_a_value_under_two_parents_is_two(nodes: dict[str, Any], policy: str) -> None:
    built = analyse(nodes, config(policy))
    assert len(set(built.names.values())) == len(built.names) == len(built.hypernodes)
    for node, type_name in built.placed.items():
        tiers = config(policy).tiers(type_name)
        values = [nodes[node].get(key) for key in tiers]
        if None not in values:
            # The node's leaf is the HyperNode of its whole path: the same leaf value under another
            # parent is another path, so another HyperNode.
            leaf = built.names[(type_name, *values)]
            holder = next(h for h in built.hypernodes if h.name == leaf)
            held = {m.selector.exact_match.name for m in holder.members if m.selector and m.selector.exact_match}
            assert node in held


@given(clusters(st.one_of(BASE_VALUES, OTHER_VALUES), "n", 40), POLICY, st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_the_order_of_nodes_does_not_matter(nodes: dict[str, Any], policy: str, random: Any) -> None:
    items = list(nodes.items())
    random.shuffle(items)
    assert analyse(dict(items), config(policy)).hypernodes == analyse(nodes, config(policy)).hypernodes
