"""status.nodeCount is exactly Volcano's value, so two writers of it agree; the Synced condition."""

from __future__ import annotations

from tests.builders import leaf, parent
from volcano_topology.api import HyperNode
from volcano_topology.status import SyncState, condition, node_count, status_differs

NODES = {"gpu-1": {"rack": "a"}, "gpu-2": {"rack": "a"}, "gpu-3": {"rack": "b"}, "cpu-1": {"rack": "a"}}


def selector_leaf(*members: dict[str, object]) -> HyperNode:
    return HyperNode.model_validate(
        {
            "metadata": {"name": "sel"},
            "spec": {"tier": 1, "members": [{"type": "Node", "selector": m} for m in members]},
        }
    )


def test_a_spine_counts_its_children_not_the_nodes_under_them() -> None:
    """Volcano writes 2 for a spine over two leaves of 32 nodes each, not 64."""
    assert node_count(parent("spine", "leaf-a", "leaf-b"), NODES) == 2


def test_exact_match_counts_the_name_itself() -> None:
    assert node_count(leaf("l", "gpu-1", "gpu-2"), NODES) == 2
    assert node_count(leaf("l", "gpu-1", "not-a-node-yet"), NODES) == 2, "counted by name, as Volcano does"


def test_regex_and_label_members_count_the_nodes_they_select_once() -> None:
    assert node_count(selector_leaf({"regexMatch": {"pattern": "gpu"}}), NODES) == 3, "unanchored, like Go"
    assert node_count(selector_leaf({"regexMatch": {"pattern": "^gpu-[12]$"}}), NODES) == 2
    assert node_count(selector_leaf({"labelMatch": {"matchLabels": {"rack": "a"}}}), NODES) == 3
    both = selector_leaf({"regexMatch": {"pattern": "gpu"}}, {"labelMatch": {"matchLabels": {"rack": "a"}}})
    assert node_count(both, NODES) == 4, "distinct names over all members"
    assert node_count(selector_leaf({"regexMatch": {"pattern": "gpu"}}, {"exactMatch": {"name": "gpu-1"}}), NODES) == 3


def test_the_synced_condition_moves_its_transition_time_only_on_a_change() -> None:
    first = condition(SyncState(True, "Applied", "ok"), None, 1, "t1")
    same = condition(SyncState(True, "Applied", "ok"), [first], 2, "t2")
    assert same["lastTransitionTime"] == "t1"
    flipped = condition(SyncState(False, "Contested", "x"), [same], 2, "t3")
    assert flipped["lastTransitionTime"] == "t3"
    assert not status_differs({"conditions": [same]}, {"conditions": [{**same, "lastTransitionTime": "t9"}]})
    assert status_differs({"nodeCount": 2}, {"nodeCount": 64})
