"""TreeBuilder: correct trees from real-world fabrics, deterministic names, clear errors."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volcano_topology.api import HyperNode
from volcano_topology.sdk import TreeBuilder, TreeError
from volcano_topology.sdk.naming import MAX_NAME, sanitize, usable
from volcano_topology.tree import tree_problems
from volcano_topology.validation import check_document


def shape(hypernodes: list[HyperNode]) -> dict[str, tuple[int, list[str]]]:
    return {
        h.name: (h.spec.tier, [m.selector.exact_match.name for m in h.members])  # type: ignore[union-attr]
        for h in hypernodes
    }


def clos() -> TreeBuilder:
    tree = TreeBuilder(tier_names={1: "leaf", 2: "spine"})
    tree.switch("spine-a").switch("spine-b")
    for index, spine in enumerate(["spine-a", "spine-a", "spine-b"]):
        tree.switch(f"leaf-{index}", parents=[spine]).attach(f"leaf-{index}", f"n{index}a", f"n{index}b")
    return tree


def test_builds_the_natural_tree() -> None:
    built = clos().build()
    assert shape(built) == {
        "leaf-0": (1, ["n0a", "n0b"]),
        "leaf-1": (1, ["n1a", "n1b"]),
        "leaf-2": (1, ["n2a", "n2b"]),
        "spine-a": (2, ["leaf-0", "leaf-1"]),
        "spine-b": (2, ["leaf-2"]),
    }
    assert {h.spec.tier_name for h in built} == {"leaf", "spine"}  # type: ignore[union-attr]
    assert tree_problems({h.name: h for h in built}) == []
    assert all(check_document(h.to_dict()).ok for h in built)


def test_rails_join_leaves_that_share_nodes() -> None:
    tree = TreeBuilder()
    for rail in range(4):
        tree.switch(f"spine-rail{rail}")
        for unit in range(2):
            tree.switch(f"leaf-u{unit}-r{rail}", parents=[f"spine-rail{rail}"])
            tree.attach(f"leaf-u{unit}-r{rail}", f"u{unit}-h1", f"u{unit}-h2")
    for unit in range(2):
        tree.rails(*(f"leaf-u{unit}-r{rail}" for rail in range(4)))
    built = shape(tree.build())
    leaves = {name: members for name, (tier, members) in built.items() if tier == 1}
    assert sorted(leaves.values()) == [["u0-h1", "u0-h2"], ["u1-h1", "u1-h2"]], "one leaf per unit, each node once"
    [(top, (_, children))] = [(n, v) for n, v in built.items() if v[0] == 2]
    assert sorted(children) == sorted(leaves), "the rail planes join into one parent"
    assert top.startswith("spine-rail0-x4-")


def test_redundant_uplinks_join_the_parents() -> None:
    tree = TreeBuilder()
    tree.switch("core-a").switch("core-b")
    tree.switch("spine-1", parents=["core-a", "core-b"]).switch("spine-2", parents=["core-a", "core-b"])
    tree.switch("leaf-1", parents=["spine-1"]).attach("leaf-1", "n1")
    tree.switch("leaf-2", parents=["spine-2"]).attach("leaf-2", "n2")
    built = shape(tree.build())
    cores = [name for name, (tier, _) in built.items() if tier == 3]
    assert len(cores) == 1
    assert built[cores[0]][1] == ["spine-1", "spine-2"]


def test_switches_without_nodes_below_are_left_out() -> None:
    tree = clos().switch("spine-empty").switch("leaf-empty", parents=["spine-empty"])
    assert "spine-empty" not in shape(tree.build())


def test_unusable_and_colliding_names_are_hashed_from_the_path() -> None:
    tree = TreeBuilder(strict=False)
    tree.switch("Spine 1")  # sanitises to spine-1: fine
    tree.switch("LEAF_A", parents=["Spine 1"]).attach("LEAF_A", "n1")  # leaf-a
    tree.switch("leaf:a", parents=["Spine 1"]).attach("leaf:a", "n2")  # leaf-a as well: a collision
    tree.switch("x" * 80, parents=["Spine 1"]).attach("x" * 80, "n3")  # too long
    names = sorted(shape(tree.build()))
    assert "spine-1" in names
    hashed = [n for n in names if n != "spine-1"]
    assert len(hashed) == 3
    assert all(usable(n) and len(n) <= MAX_NAME for n in names)
    assert sum(n.startswith("leaf-a-") for n in hashed) == 2
    assert any(n.startswith("xxxx") for n in hashed)


def test_prefix_is_applied() -> None:
    tree = TreeBuilder(name_prefix="ufm-")
    tree.switch("leaf-1").attach("leaf-1", "n1")
    assert list(shape(tree.build())) == ["ufm-leaf-1"]


def test_problems_name_the_switch_or_node() -> None:
    tree = TreeBuilder()
    tree.switch("leaf-1", parents=["nowhere"]).attach("leaf-1", "Node_1")
    tree.switch("a", parents=["b"]).switch("b", parents=["a"])
    tree.switch("mixed").attach("mixed", "n9").switch("child", parents=["mixed"]).attach("child", "n8")
    with pytest.raises(TreeError) as raised:
        tree.build()
    text = "\n".join(raised.value.problems)
    assert "switch leaf-1: parent nowhere is not declared" in text
    assert "node 'Node_1' under switch leaf-1: not a valid node name" in text
    assert "uplinks form a cycle: a -> b -> a" in text
    assert "switch mixed: has both nodes and child switches" in text


def test_an_explicit_tier_below_the_children_is_refused() -> None:
    tree = TreeBuilder()
    tree.switch("spine", tier=1).switch("leaf", parents=["spine"]).attach("leaf", "n1")
    with pytest.raises(TreeError, match="switch spine: tier 1 is not above the tier 1 of leaf"):
        tree.build()


@settings(max_examples=40, deadline=None)
@given(
    leaves=st.integers(min_value=1, max_value=12),
    per_leaf=st.integers(min_value=1, max_value=4),
    spines=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_output_is_the_same_whatever_the_input_order(leaves: int, per_leaf: int, spines: int, seed: int) -> None:
    declarations = [("switch", f"Spine_{s}", ()) for s in range(spines)]
    for leaf in range(leaves):
        declarations.append(("switch", f"Leaf {leaf}", (f"Spine_{leaf % spines}",)))
        declarations.extend(("attach", f"Leaf {leaf}", (f"node-{leaf}-{n}",)) for n in range(per_leaf))

    def build(order: list[tuple[str, str, tuple[str, ...]]]) -> list[dict[str, object]]:
        tree = TreeBuilder(strict=False)
        for kind, name, extra in order:
            tree.switch(name, parents=extra) if kind == "switch" else tree.attach(name, *extra)
        return [h.to_dict() for h in tree.build()]

    shuffled = list(declarations)
    random.Random(seed).shuffle(shuffled)
    first = build(declarations)
    assert build(shuffled) == first
    assert all(usable(h["metadata"]["name"]) for h in first)  # type: ignore[index]


@given(st.text(max_size=90))
def test_sanitized_names_are_lowercase_label_like(raw: str) -> None:
    name = sanitize(raw)
    assert name == name.lower()
    assert not name or (name[0].isalnum() and name[-1].isalnum())
