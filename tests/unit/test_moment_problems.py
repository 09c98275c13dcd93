"""The rules every intermediate state of a plan keeps (``tree.moment_problems``)."""

from __future__ import annotations

from tests.builders import by_name, leaf, parent, regex_parent
from volcano_topology.api import HyperNode, HyperNodeSpec, Member, MemberSelector, ObjectMeta, RegexMatch
from volcano_topology.tree import moment_problems


def test_a_strict_tree_has_no_problems() -> None:
    tree = by_name(leaf("l1", "n1", "n2"), leaf("l2", "n3"), parent("s1", "l1", "l2"), parent("root", "s1", tier=3))
    assert moment_problems(tree) == []
    assert moment_problems({}) == []


def test_a_node_in_two_hypernodes() -> None:
    assert moment_problems(by_name(leaf("l1", "n1", "n2"), leaf("l2", "n2"))) == [
        "node n2 is a member of 2 HyperNodes: l1, l2"
    ]


def test_a_hypernode_in_two_parents() -> None:
    state = by_name(leaf("l1", "n1"), parent("s1", "l1"), parent("s2", "l1"))
    assert moment_problems(state) == ["HyperNode l1 is a member of 2 HyperNodes: s1, s2"]


def test_a_reference_to_a_missing_hypernode() -> None:
    state = by_name(leaf("l1", "n1"), parent("s1", "l1", "gone"))
    assert moment_problems(state) == ["s1 has member HyperNode gone, which does not exist"]
    assert moment_problems(state, existing={"gone"}) == []  # someone else's object


def test_a_parent_not_above_its_child_and_a_cycle() -> None:
    assert moment_problems(by_name(leaf("l1", "n1", tier=2), parent("s1", "l1", tier=2))) == [
        "s1 (tier 2) is not above its member l1 (tier 2)"
    ]
    cycle = moment_problems(by_name(parent("a", "b", tier=3), parent("b", "a", tier=2)))
    assert cycle == ["b (tier 2) is not above its member a (tier 3)"]


def test_members_selected_by_pattern_are_not_checked() -> None:
    nothing = Member(type="Node", selector=MemberSelector(regex_match=RegexMatch(pattern="^$")))
    placeholder = HyperNode(metadata=ObjectMeta(name="l2"), spec=HyperNodeSpec(tier=1, members=[nothing]))
    state = by_name(leaf("l1", "n1"), placeholder, regex_parent("s1", "l.*"), parent("s2", "l1", "l2"))
    assert moment_problems(state) == []
