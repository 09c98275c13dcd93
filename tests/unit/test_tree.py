"""Strict-tree rules over a provider's set, and tree height for write order."""

from __future__ import annotations

from tests.builders import by_name, leaf, parent, regex_parent
from volcano_topology.tree import levels, tree_problems


def rules(problems: list) -> list[tuple[str | None, str]]:  # type: ignore[type-arg]
    return [(p.name, p.rule) for p in problems]


def test_a_proper_tree_has_no_problems() -> None:
    tree = by_name(leaf("l1", "n1", "n2"), leaf("l2", "n3"), parent("s1", "l1", "l2"), parent("root", "s1", tier=3))
    assert tree_problems(tree) == []


def test_two_parents() -> None:
    tree = by_name(leaf("l1", "n1"), parent("a", "l1"), parent("b", "l1"))
    [problem] = tree_problems(tree)
    assert (problem.name, problem.rule, problem.level) == ("b", "one parent", "topology")
    assert "l1 already has parent a" in problem.message


def test_cycle() -> None:
    tree = by_name(parent("a", "b", tier=3), parent("b", "a", tier=2))
    found = rules(tree_problems(tree))
    assert ("a", "no cycles") in found
    assert ("b", "parent tier above children") in found


def test_tier_inversion() -> None:
    tree = by_name(leaf("l1", "n1", tier=2), parent("s1", "l1", tier=2))
    assert rules(tree_problems(tree)) == [("s1", "parent tier above children")]


def test_node_in_two_leaves() -> None:
    tree = by_name(leaf("l1", "n1", "n2"), leaf("l2", "n2"))
    [problem] = tree_problems(tree)
    assert (problem.name, problem.rule) == ("l2", "node in one leaf")
    assert "node n2 is already a member of HyperNode l1" in problem.message


def test_nodes_only_at_the_lowest_tier() -> None:
    tree = by_name(leaf("l1", "n1"), leaf("odd", "n2", tier=2), parent("s1", "l1", tier=3))
    assert rules(tree_problems(tree)) == [("odd", "nodes at the lowest tier")]


def test_hypernode_member_by_regex() -> None:
    tree = by_name(leaf("l1", "n1"), regex_parent("s1", "l.*"))
    assert rules(tree_problems(tree)) == [("s1", "exactMatch for HyperNode members")]


def test_levels_put_children_below_parents() -> None:
    tree = by_name(leaf("l1", "n1"), leaf("l2", "n2"), parent("s1", "l1"), parent("root", "s1", "l2", tier=3))
    assert levels(tree) == {"l1": 0, "l2": 0, "s1": 1, "root": 2}


def test_levels_survive_cycles() -> None:
    tree = by_name(parent("a", "b", tier=3), parent("b", "a", tier=2))
    assert set(levels(tree)) == {"a", "b"}
