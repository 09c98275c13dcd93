"""Planning: ownership, no needless writes, tree order, the deletion guard."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import by_name, leaf, parent
from volcano_topology import ownership
from volcano_topology.api import HyperNode
from volcano_topology.plan import Create, Delete, DeletionGuard, Observed, Update, plan_changes, with_ownership

P = "fabric"
MANAGER = ownership.field_manager(P)


def observed(hypernode: HyperNode, *, owner: str | None = P, managed: dict[str, Any] | None = None) -> Observed:
    """What the API server would return for an object written by ``owner``."""
    body = with_ownership(hypernode, owner).to_dict() if owner else hypernode.to_dict()
    labels = body["metadata"].get("labels", {})
    fields = {"f:metadata": {"f:labels": {f"f:{k}": {} for k in labels}}}
    entry = {"manager": ownership.field_manager(owner or "x"), "operation": "Apply", "fieldsV1": managed or fields}
    body["metadata"].update(resourceVersion="7", uid="u-" + hypernode.name, managedFields=[entry])
    return Observed.from_dict(body)


def desired(*hypernodes: HyperNode) -> dict[str, HyperNode]:
    return {h.name: with_ownership(h, P) for h in hypernodes}


def test_nothing_to_do_when_everything_matches() -> None:
    tree = [leaf("l1", "n1"), parent("s1", "l1")]
    plan = plan_changes(P, desired(*tree), {h.name: observed(h) for h in tree})
    assert plan.operations == []
    assert sorted(plan.unchanged) == ["l1", "s1"]


def test_creates_go_children_first() -> None:
    plan = plan_changes(P, desired(parent("root", "s1", tier=3), parent("s1", "l1"), leaf("l1", "n1")), {})
    assert [[op.name for op in wave] for wave in plan.waves] == [["l1"], ["s1"], ["root"]]
    assert all(isinstance(op, Create) for op in plan.operations)


def test_deletes_come_last_and_parents_first() -> None:
    old = [
        leaf("l1", "n1"),
        leaf("l2", "n2"),
        parent("s1", "l1"),
        parent("s2", "l2"),
        parent("root", "s1", "s2", tier=3),
    ]
    new = [leaf("l1", "n1"), parent("s1", "l1"), parent("root", "s1", tier=3)]
    plan = plan_changes(P, desired(*new), {h.name: observed(h) for h in old}, delete=["l2", "s2"])
    names = [[op.name for op in wave] for wave in plan.waves]
    assert names == [["root"], ["s2"], ["l2"]]
    assert isinstance(plan.waves[0][0], Update)
    assert all(isinstance(op, Delete) for op in plan.waves[1] + plan.waves[2])


def test_a_node_moving_between_leaves_is_released_before_it_is_claimed() -> None:
    old = [leaf("l1", "n1", "n2"), leaf("l2", "n3")]
    new = [leaf("l1", "n1"), leaf("l2", "n3", "n2")]
    plan = plan_changes(P, desired(*new), {h.name: observed(h) for h in old})
    assert [[op.name for op in wave] for wave in plan.waves] == [["l1"], ["l2"]]


def test_objects_of_others_are_conflicts_never_operations() -> None:
    foreign = observed(leaf("l1", "n1"), owner=None)
    other = observed(leaf("l2", "n2"), owner="someone-else")
    plan = plan_changes(P, desired(leaf("l1", "n9"), leaf("l2", "n9")), {"l1": foreign, "l2": other}, delete=["l1"])
    assert plan.operations == []
    assert [(c.name, c.owner) for c in plan.conflicts] == [
        ("l1", "an object not managed by volcano-topology"),
        ("l2", "provider someone-else"),
    ]


def test_a_label_we_stopped_setting_is_a_change() -> None:
    with_extra = leaf("l1", "n1")
    with_extra.metadata.labels = {"tier": "leaf"}
    current = observed(with_extra)
    assert isinstance(plan_changes(P, desired(leaf("l1", "n1")), {"l1": current}).operations[0], Update)


def test_labels_set_by_others_are_not_a_change() -> None:
    current = observed(leaf("l1", "n1"))
    current = Observed(**{**current.__dict__, "labels": {**current.labels, "team": "infra"}})
    assert plan_changes(P, desired(leaf("l1", "n1")), {"l1": current}).unchanged == ["l1"]


def test_ownership_labels_always_win() -> None:
    sneaky = leaf("l1", "n1")
    sneaky.metadata.labels = {ownership.SOURCE_LABEL: "other", ownership.MANAGED_BY_LABEL: "me", "x": "y"}
    labels = with_ownership(sneaky, P).metadata.labels
    assert labels == {ownership.SOURCE_LABEL: P, ownership.MANAGED_BY_LABEL: "volcano-topology", "x": "y"}


@pytest.mark.parametrize(
    ("owned", "deleting", "wanted", "guard", "refused"),
    [
        (10, 0, 10, DeletionGuard(), False),
        (10, 10, 0, DeletionGuard(), True),  # empty snapshot
        (10, 10, 0, DeletionGuard(allow_empty=True), False),
        (10, 5, 5, DeletionGuard(), False),  # exactly at the limit
        (10, 6, 4, DeletionGuard(), True),  # sharply shrunken
        (10, 6, 4, DeletionGuard(max_delete_fraction=1.0), False),
        (0, 0, 0, DeletionGuard(), False),
    ],
)
def test_deletion_guard(owned: int, deleting: int, wanted: int, guard: DeletionGuard, refused: bool) -> None:
    assert (guard.refusal(owned, deleting, wanted) is not None) == refused


def test_observed_reads_managed_keys_per_manager() -> None:
    body = with_ownership(leaf("l1", "n1"), P).to_dict()
    body["metadata"]["managedFields"] = [
        {"manager": MANAGER, "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}, "f:annotations": {"f:b": {}}}}},
        {"manager": "kubectl", "fieldsV1": {"f:metadata": {"f:labels": {"f:c": {}}}}},
    ]
    found = Observed.from_dict(body)
    assert found.managed_keys[MANAGER] == (frozenset({"a"}), frozenset({"b"}))
    assert found.owner == P
    assert found.hypernode is not None
    assert by_name(found.hypernode)["l1"].spec == leaf("l1", "n1").spec
