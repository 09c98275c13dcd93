"""The pure build: label paths to a strict tree, names, missing levels, several types, odd input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError
from volcano_topology_label import LabelSettings, analyse, build

from volcano_topology.api import HyperNode
from volcano_topology.plan import with_ownership
from volcano_topology.sdk import naming
from volcano_topology.tree import tree_problems
from volcano_topology.validation import check_document

HOST = {"nodeLabel": "kubernetes.io/hostname"}


def settings(**extra: Any) -> LabelSettings:
    types = extra.pop("types", {"gpu": [{"nodeLabel": "spine"}, {"nodeLabel": "leaf"}, HOST]})
    return LabelSettings.model_validate({"networkTopologyTypes": types, **extra})


def by_name(hypernodes: list[HyperNode]) -> dict[str, HyperNode]:
    return {h.name: h for h in hypernodes}


def members(hypernode: HyperNode) -> list[str]:
    return [m.selector.exact_match.name for m in hypernode.members if m.selector and m.selector.exact_match]


def assert_valid(hypernodes: list[HyperNode]) -> None:
    """A strict tree, and every object passes the CRD and Volcano's admission rules as the writer checks them."""
    found = by_name(hypernodes)
    assert len(found) == len(hypernodes), "names are unique"
    assert tree_problems(found) == []
    for hypernode in hypernodes:
        verdict = check_document(with_ownership(hypernode, "label").to_dict(), admission=True)
        assert verdict.ok, verdict.problems


def test_a_spine_leaf_tree_with_readable_names_tiers_labels_and_tier_names() -> None:
    nodes = {f"n{i}": {"spine": f"s{i // 4}", "leaf": f"l{i // 2}"} for i in range(8)}
    hypernodes = build(nodes, settings())
    assert_valid(hypernodes)
    found = by_name(hypernodes)
    assert sorted(found) == ["gpu-l0", "gpu-l1", "gpu-l2", "gpu-l3", "gpu-s0", "gpu-s1"]
    assert members(found["gpu-s0"]) == ["gpu-l0", "gpu-l1"]
    assert members(found["gpu-l3"]) == ["n6", "n7"]
    assert found["gpu-l3"].spec is not None and found["gpu-s1"].spec is not None
    assert (found["gpu-l3"].spec.tier, found["gpu-l3"].spec.tier_name) == (1, "leaf")
    assert (found["gpu-s1"].spec.tier, found["gpu-s1"].spec.tier_name) == (2, "spine")
    assert found["gpu-s1"].metadata.labels == {"spine": "s1"}  # as Volcano: the tier's label on the HyperNode
    assert [h.name for h in hypernodes] == ["gpu-l0", "gpu-l1", "gpu-l2", "gpu-l3", "gpu-s0", "gpu-s1"]


def test_the_same_value_under_two_parents_is_two_hypernodes_each_with_one_parent() -> None:
    nodes = {
        "a": {"spine": "s1", "leaf": "rack1"},
        "b": {"spine": "s2", "leaf": "rack1"},
        "c": {"spine": "s2", "leaf": "r2"},
    }
    built = analyse(nodes, settings())
    assert_valid(built.hypernodes)
    found = by_name(built.hypernodes)
    first, second = built.names[("gpu", "s1", "rack1")], built.names[("gpu", "s2", "rack1")]
    assert first != second
    assert first.startswith("gpu-rack1-") and second.startswith("gpu-rack1-")  # readable stem, hash of the path
    assert members(found[first]) == ["a"] and members(found[second]) == ["b"]
    assert members(found["gpu-s1"]) == [first]
    assert members(found["gpu-s2"]) == sorted([second, "gpu-r2"])
    assert built.names[("gpu", "s2", "r2")] == "gpu-r2"  # its value is unique: the readable name


def test_names_do_not_depend_on_unrelated_nodes() -> None:
    base = {"a": {"spine": "s1", "leaf": "l1"}, "b": {"spine": "s1", "leaf": "l2"}}
    more = {**base, "c": {"spine": "s9", "leaf": "l9"}, "d": {"spine": "s1", "leaf": "l1"}}
    names = analyse(base, settings()).names
    assert {p: n for p, n in analyse(more, settings()).names.items() if p in names} == names


def test_a_node_missing_a_level_is_skipped_by_default_and_counted() -> None:
    nodes = {
        "a": {"spine": "s1", "leaf": "l1"},
        "b": {"spine": "s1"},
        "c": {"leaf": "l1"},
        "d": {"spine": "s1", "leaf": ""},
    }
    built = analyse(nodes, settings())
    assert_valid(built.hypernodes)
    assert built.missing_level == {"b", "c", "d"}  # an empty value counts as missing
    assert built.skipped == {"b", "c", "d"}
    assert built.gauges()["nodes_missing_level"] == 3
    assert {n for h in built.hypernodes for n in members(h)} == {"a", "gpu-l1"}


def test_attach_above_puts_the_node_in_an_unlabelled_leaf_under_the_levels_it_has() -> None:
    types = {"gpu": [{"nodeLabel": "spine"}, {"nodeLabel": "block"}, {"nodeLabel": "leaf"}, HOST]}
    nodes = {
        "full": {"spine": "s1", "block": "b1", "leaf": "l1"},
        "no-leaf": {"spine": "s1", "block": "b1"},
        "no-block": {"spine": "s1", "leaf": "l7"},  # labels below the first missing one are not used
        "no-spine": {"block": "b1", "leaf": "l1"},  # nothing above: skipped
    }
    built = analyse(nodes, settings(types=types, missingLabels="attachAbove"))
    assert_valid(built.hypernodes)
    found = by_name(built.hypernodes)
    assert built.missing_level == {"no-leaf", "no-block", "no-spine"}
    assert built.skipped == {"no-spine"}
    assert members(found["gpu-b1-unlabelled"]) == ["no-leaf"]
    assert members(found["gpu-s1-unlabelled"]) == ["no-block"]
    assert members(found["gpu-b1"]) == ["gpu-b1-unlabelled", "gpu-l1"]
    assert members(found["gpu-s1"]) == ["gpu-b1", "gpu-s1-unlabelled"]
    tiers = {name: h.spec.tier for name, h in found.items() if h.spec}
    assert tiers == {"gpu-l1": 1, "gpu-b1-unlabelled": 1, "gpu-s1-unlabelled": 1, "gpu-b1": 2, "gpu-s1": 3}
    assert found["gpu-s1-unlabelled"].spec is not None and found["gpu-s1-unlabelled"].spec.tier_name is None


def test_mixed_depth_two_generations_give_one_strict_tree_each() -> None:
    types = {
        "h100": [{"nodeLabel": "net/spine"}, {"nodeLabel": "net/block"}, {"nodeLabel": "net/leaf"}, HOST],
        "a100": [{"nodeLabel": "net/block"}, {"nodeLabel": "net/leaf"}, HOST],
    }
    nodes = {
        **{f"h{i}": {"net/spine": "sp", "net/block": f"b{i // 4}", "net/leaf": f"l{i // 2}"} for i in range(8)},
        **{f"a{i}": {"net/block": "old", "net/leaf": f"old{i // 2}"} for i in range(4)},
    }
    built = analyse(nodes, settings(types=types))
    assert_valid(built.hypernodes)
    assert dict(built.placed) == {**{f"h{i}": "h100" for i in range(8)}, **{f"a{i}": "a100" for i in range(4)}}
    assert built.several_types == set(nodes)  # the types share label keys: every node carries labels of both
    assert built.missing_level == set()
    found = by_name(built.hypernodes)
    assert found["h100-sp"].spec is not None and found["h100-sp"].spec.tier == 3
    assert found["a100-old"].spec is not None and found["a100-old"].spec.tier == 2
    assert members(found["a100-old"]) == ["a100-old0", "a100-old1"]
    assert {h.spec.tier for h in built.hypernodes if h.spec and any(m.type == "Node" for m in h.members)} == {1}


def test_a_node_of_two_types_joins_the_one_it_fits_best_ties_by_name() -> None:
    types = {"zeta": [{"nodeLabel": "rack"}, HOST], "alpha": [{"nodeLabel": "pod"}, HOST]}
    built = analyse({"n": {"rack": "r1", "pod": "p1"}}, settings(types=types))
    assert built.placed == {"n": "alpha"} and built.several_types == {"n"}
    assert [h.name for h in built.hypernodes] == ["alpha-p1"]
    types = {"deep": [{"nodeLabel": "a"}, {"nodeLabel": "b"}, HOST], "flat": [{"nodeLabel": "c"}, HOST]}
    assert analyse({"n": {"a": "1", "c": "3"}}, settings(types=types)).placed == {"n": "flat"}  # whole beats partial


def test_odd_input() -> None:
    long_value = "v" * 63
    nodes = {
        "upper": {"spine": "S0", "leaf": "L1"},
        "lower": {"spine": "s0", "leaf": "l9"},  # S0 and s0 are different values whose readable names clash
        "long": {"spine": "s0", "leaf": long_value},
        "dots": {"spine": "s0", "leaf": "_._"},
        "Bad_Name": {"spine": "s0", "leaf": "l1"},
        "no-labels": {},
        "other-labels": {"kubernetes.io/hostname": "x"},
    }
    built = analyse(nodes, settings())
    assert_valid(built.hypernodes)
    assert built.invalid_names == {"Bad_Name"}
    assert built.outside == {"no-labels", "other-labels"}
    upper, lower = built.names[("gpu", "S0")], built.names[("gpu", "s0")]
    assert upper != lower and upper.startswith("gpu-s0-") and lower.startswith("gpu-s0-")
    assert built.names[("gpu", "S0", "L1")] == "gpu-l1"
    assert len(built.names[("gpu", "s0", long_value)]) <= naming.MAX_NAME
    assert built.names[("gpu", "s0", "_._")].startswith("gpu-hn-")
    assert all(naming.usable(name) for name in built.names.values())


def test_input_order_does_not_matter() -> None:
    nodes = {f"n{i}": {"spine": f"s{i % 3}", "leaf": f"l{i % 5}"} for i in range(30)}
    backwards: Mapping[str, Mapping[str, str]] = dict(reversed(list(nodes.items())))
    assert build(backwards, settings()) == build(nodes, settings())


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"networkTopologyTypes": {}}, "networkTopologyTypes", "at least 1"),
        ({"networkTopologyTypes": {"t": [HOST]}}, "networkTopologyTypes", "at least one tier label"),
        ({"networkTopologyTypes": {"t" * 21: [{"nodeLabel": "a"}, HOST]}}, "networkTopologyTypes", "1 to 20"),
        ({"networkTopologyTypes": {"t": [{"nodeLabel": "a"}, {"nodeLabel": "a"}, HOST]}}, "networkTopologyTypes",
         "listed twice"),
        ({"networkTopologyTypes": {"T": [{"nodeLabel": "a"}, HOST], "t": [{"nodeLabel": "b"}, HOST]}},
         "networkTopologyTypes", "rename one"),
        ({"networkTopologyTypes": {"t": [{"nodeLabel": "not a key"}, HOST]}}, "nodeLabel", "not a valid label key"),
        ({"networkTopologyTypes": {"t": [{"label": "a"}, HOST]}}, "label", "Extra inputs"),
        ({"networkTopologyTypes": {"t": [{"nodeLabel": "a"}, HOST]}, "missingLabels": "guess"}, "missingLabels",
         "skip"),
        ({"networkTopologyTypes": {"t": [{"nodeLabel": "a"}, HOST]}, "debounce": "5s", "maxDelay": "1s"}, "",
         "maxDelay"),
        ({"networkTopologyTypes": {"t": [{"nodeLabel": "a"}, HOST]}, "intervall": 3}, "intervall", "Extra inputs"),
        ({"networkTopologyTypes": {"t": {"levels": [{"nodeLabel": "a", "tierName": "x"}, {"nodeLabel": "b",
          "tierName": "x"}, HOST]}}}, "networkTopologyTypes", "duplicate tierName x"),
        ({"networkTopologyTypes": {"t": {"nodeSelector": {"matchLabels": {"gen": "-x"}}, "levels": [
          {"nodeLabel": "a"}, HOST]}}}, "matchLabels", "not a valid label value"),
        ({"networkTopologyTypes": {"t": {"levels": [{"nodeLabel": "a"}, HOST], "selector": {}}}}, "selector",
         "Extra inputs"),
    ],
)  # fmt: skip
def test_bad_configuration_names_the_field(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        LabelSettings.model_validate(config)
    assert field in str(raised.value) and message in str(raised.value)


def test_defaults_are_the_documented_ones() -> None:
    defaults = settings()
    assert (defaults.missing_labels, defaults.debounce, defaults.max_delay) == ("skip", 1.0, 10.0)


def test_durations_read_like_volcano_s() -> None:
    parsed = settings(debounce="500ms", maxDelay="1m")
    assert (parsed.debounce, parsed.max_delay) == (0.5, 60.0)
