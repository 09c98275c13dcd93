"""Release before claim: every single write of a plan keeps the scheduler's tree intact.

A plan's waves run concurrently and may fail part way, so after every write, in any order
within a wave and for any subset of a wave, the provider's objects must satisfy
``tree.moment_problems`` (no node in two HyperNodes, no HyperNode in two parents, no
reference to a missing HyperNode, parents above children) — and the writes together must
end exactly at the desired state.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.builders import leaf, parent
from tests.unit.test_plan import P, desired, observed
from volcano_topology.api import HyperNode
from volcano_topology.plan import (
    PLACEHOLDER_PATTERN,
    Create,
    Delete,
    DeletionGuard,
    Observed,
    Operation,
    Plan,
    Update,
    placeholder_member,
    plan_changes,
    with_ownership,
)
from volcano_topology.tree import moment_problems
from volcano_topology.validation import check_document

State = dict[str, HyperNode]


# -- executing a plan the way the writer does ---------------------------------------------


def apply(state: State, op: Operation) -> None:
    if isinstance(op, Delete):
        assert op.name in state, f"deletes {op.name}, which is not there"
        del state[op.name]
    elif isinstance(op, Create):
        assert op.name not in state, f"creates {op.name}, which is already there"
        state[op.name] = op.hypernode
    else:
        assert op.name in state, f"updates {op.name}, which is not there"
        state[op.name] = op.hypernode


def spec_of(state: Mapping[str, HyperNode]) -> dict[str, object]:
    return {name: (h.to_dict().get("spec"), h.metadata.labels) for name, h in sorted(state.items())}


def describe(state: Mapping[str, HyperNode]) -> str:
    lines = []
    for name, h in sorted(state.items()):
        members = [
            (m.selector.exact_match.name if m.selector and m.selector.exact_match else "<placeholder>")
            for m in h.members
        ]
        lines.append(f"{name}(t{h.spec.tier if h.spec else '?'})={members}")
    return " ".join(lines)


def execute(
    plan: Plan,
    before: Mapping[str, HyperNode],
    permute: Callable[[list[Operation]], Sequence[Operation]],
    *,
    every_subset_up_to: int = 6,
) -> State:
    """Run ``plan`` over ``before``, checking the tree after every single write; the final state."""
    state: State = dict(before)
    assert not moment_problems(state), f"the starting state is broken: {moment_problems(state)}"
    for index, wave in enumerate(plan.waves):
        names = [op.name for op in wave]
        assert len(set(names)) == len(names), f"wave {index} writes one name twice: {names}"
        start = dict(state)
        if len(wave) <= every_subset_up_to:
            for size in range(1, len(wave)):
                for subset in itertools.combinations(wave, size):
                    partial = dict(start)
                    for op in subset:
                        apply(partial, op)
                    problems = moment_problems(partial)
                    assert not problems, (
                        f"wave {index} partly applied ({[o.name for o in subset]}): {problems}\n"
                        f"  state: {describe(partial)}"
                    )
        for op in permute(list(wave)):
            apply(state, op)
            problems = moment_problems(state)
            assert not problems, f"after {_verb(op)} {op.name} in wave {index}: {problems}\n  state: {describe(state)}"
    return state


def _verb(op: Operation) -> str:
    if isinstance(op, Update):
        return "release" if op.release else "update"
    return "create" if isinstance(op, Create) else "delete"


def _is_placeholder(op: Operation) -> bool:
    return (
        isinstance(op, Update)
        and op.release
        and all(m.selector and m.selector.regex_match for m in op.hypernode.members)
    )


def plan_for(before: Iterable[HyperNode], after: Iterable[HyperNode]) -> tuple[Plan, State, State]:
    before_state = {h.name: with_ownership(h, P) for h in before}
    after_state = desired(*after)
    seen = {name: observed(h) for name, h in before_state.items()}
    plan = plan_changes(P, after_state, seen, delete=set(before_state) - set(after_state))
    return plan, before_state, after_state


def check_transition(before: Iterable[HyperNode], after: Iterable[HyperNode]) -> Plan:
    """Plan ``before -> after``; run it checking every partial wave (all subsets, up to 10 writes a wave)
    and every single write in two orders; check that it ends at ``after``."""
    plan, start, end = plan_for(before, after)
    assert plan.conflicts == []
    assert plan.unordered == []
    finished = execute(plan, start, lambda wave: wave, every_subset_up_to=10)
    finished_reversed = execute(plan, start, lambda wave: wave[::-1], every_subset_up_to=0)
    assert spec_of(finished) == spec_of(end) == spec_of(finished_reversed)
    return plan


def shape(plan: Plan) -> list[list[str]]:
    """Each wave as ``verb name``, sorted."""
    return [sorted(f"{_verb(op)} {op.name}" for op in wave) for wave in plan.waves]


# -- the six transitions ------------------------------------------------------------------


def test_a_node_moving_between_leaves() -> None:
    before = [leaf("l1", "n1", "n2"), leaf("l2", "n3"), parent("s1", "l1", "l2")]
    after = [leaf("l1", "n1"), leaf("l2", "n2", "n3"), parent("s1", "l1", "l2")]
    plan = check_transition(before, after)
    # l1 only loses n2: its one write is both its release and its final form.
    assert shape(plan) == [["update l1"], ["update l2"]]
    assert plan.unchanged == ["s1"]


def test_a_leaf_renamed() -> None:
    before = [leaf("a", "n1", "n2"), leaf("b", "n3"), parent("s1", "a", "b")]
    after = [leaf("c", "n1", "n2"), leaf("b", "n3"), parent("s1", "b", "c")]
    plan = check_transition(before, after)
    assert shape(plan) == [["release s1"], ["delete a"], ["create c"], ["update s1"]]
    release = plan.waves[0][0]
    assert isinstance(release, Update)
    assert release.release
    assert [
        m.selector.exact_match.name for m in release.hypernode.members if m.selector and m.selector.exact_match
    ] == ["b"]
    assert plan.counts() == {"create": 1, "update": 1, "release": 1, "delete": 1, "unchanged": 1}


def test_two_leaves_swapping_nodes() -> None:
    before = [leaf("l1", "n1", "n2"), leaf("l2", "n3", "n4"), parent("s1", "l1", "l2")]
    after = [leaf("l1", "n1", "n3"), leaf("l2", "n2", "n4"), parent("s1", "l1", "l2")]
    plan = check_transition(before, after)
    assert shape(plan) == [["release l1", "release l2"], ["update l1", "update l2"]]
    assert plan.counts()["update"] == 2
    assert plan.counts()["release"] == 2


def test_a_leaf_moving_to_another_spine() -> None:
    before = [
        *(leaf(f"l{i}", f"n{i}") for i in range(1, 4)),
        parent("s1", "l1", "l2"),
        parent("s2", "l3"),
        parent("root", "s1", "s2", tier=3),
    ]
    after = [
        *(leaf(f"l{i}", f"n{i}") for i in range(1, 4)),
        parent("s1", "l1"),
        parent("s2", "l2", "l3"),
        parent("root", "s1", "s2", tier=3),
    ]
    plan = check_transition(before, after)
    assert shape(plan) == [["update s1"], ["update s2"]]


def test_a_spine_replaced_by_a_new_one() -> None:
    before = [
        *(leaf(f"l{i}", f"n{i}") for i in range(1, 4)),
        parent("s1", "l1", "l2"),
        parent("s2", "l3"),
        parent("root", "s1", "s2", tier=3),
    ]
    after = [
        *(leaf(f"l{i}", f"n{i}") for i in range(1, 4)),
        parent("s3", "l1", "l2"),
        parent("s2", "l3"),
        parent("root", "s2", "s3", tier=3),
    ]
    plan = check_transition(before, after)
    assert shape(plan) == [["release root"], ["delete s1"], ["create s3"], ["update root"]]


def test_sixty_four_nodes_reshuffled_across_eight_leaves() -> None:
    def tree(home: Callable[[int, int], int]) -> list[HyperNode]:
        placed: dict[int, list[str]] = {j: [] for j in range(8)}
        for j in range(8):
            for i in range(8):
                placed[home(j, i)].append(f"n{j * 8 + i:02d}")
        leaves = [leaf(f"l{j}", *sorted(nodes)) for j, nodes in placed.items()]
        return [*leaves, parent("s0", "l0", "l1", "l2", "l3"), parent("s1", "l4", "l5", "l6", "l7")]

    # Node i of leaf j moves to leaf (j + i) % 8: every leaf keeps one node and trades seven.
    plan = check_transition(tree(lambda j, _i: j), tree(lambda j, i: (j + i) % 8))
    assert shape(plan) == [[f"release l{j}" for j in range(8)], [f"update l{j}" for j in range(8)]]
    assert plan.unchanged == ["s0", "s1"]


# -- cases that need more than old ∩ new --------------------------------------------------


def test_two_single_node_leaves_swapping_their_nodes() -> None:
    # Neither leaf can give its node up while holding at least one member (the API refuses
    # an empty HyperNode), so both hold a member that selects no node for a moment.
    before = [leaf("l1", "n1"), leaf("l2", "n2"), parent("s1", "l1", "l2")]
    after = [leaf("l1", "n2"), leaf("l2", "n1"), parent("s1", "l1", "l2")]
    plan = check_transition(before, after)
    assert shape(plan) == [["release l1", "release l2"], ["update l1", "update l2"]]
    for op in plan.waves[0]:
        assert isinstance(op, Update)
        release = op
        assert [m.to_dict() for m in release.hypernode.members] == [placeholder_member().to_dict()]
        assert release.hypernode.spec is not None
        assert release.hypernode.spec.tier == 1
    assert placeholder_member().to_dict() == {
        "type": "Node",
        "selector": {"regexMatch": {"pattern": PLACEHOLDER_PATTERN}},
    }
    assert check_document(release.hypernode.to_dict()).ok  # what Volcano's admission accepts


def test_the_only_leaf_of_a_spine_renamed() -> None:
    before = [leaf("a", "n1"), parent("s1", "a"), parent("root", "s1", tier=3)]
    after = [leaf("c", "n1"), parent("s1", "c"), parent("root", "s1", tier=3)]
    plan = check_transition(before, after)
    assert shape(plan) == [["release s1"], ["delete a"], ["create c"], ["update s1"]]


def test_a_child_and_its_parent_trading_places() -> None:
    before = [leaf("a", "n1"), parent("b", "a")]
    after = [parent("a", "b"), leaf("b", "n1")]
    check_transition(before, after)


def test_tiers_raised_top_down_and_lowered_bottom_up() -> None:
    low = [leaf("l1", "n1"), parent("s1", "l1"), parent("root", "s1", tier=3)]
    high = [leaf("l1", "n1", tier=2), parent("s1", "l1", tier=4), parent("root", "s1", tier=5)]
    up = check_transition(low, high)
    assert shape(up) == [["update root"], ["update s1"], ["update l1"]]
    down = check_transition(high, low)
    assert shape(down) == [["update l1"], ["update s1"], ["update root"]]


def test_objects_deleted_parents_first_after_their_parents_let_go() -> None:
    before = [
        leaf("l1", "n1"),
        leaf("l2", "n2"),
        parent("s1", "l1"),
        parent("s2", "l2"),
        parent("r", "s1", "s2", tier=3),
    ]
    after = [leaf("l1", "n1"), parent("s1", "l1"), parent("r", "s1", tier=3)]
    plan = check_transition(before, after)
    assert shape(plan) == [["update r"], ["delete s2"], ["delete l2"]]


# -- existing behaviour inside a phased plan ----------------------------------------------


def test_a_release_keeps_the_old_tier_and_takes_the_new_labels() -> None:
    old = leaf("l1", "n1", "n2")
    assert old.spec is not None
    old.spec.tier_name = "leaf"
    new = leaf("l1", "n1", "n3", tier=2)
    assert new.spec is not None
    new.spec.tier_name = "tor"
    new.metadata.labels = {"rack": "r1"}
    before = [old, leaf("l2", "n3", "n4"), parent("s1", "l1", "l2", tier=3)]
    after = [new, leaf("l2", "n2", "n4"), parent("s1", "l1", "l2", tier=3)]
    plan = check_transition(before, after)
    assert shape(plan) == [["release l1", "release l2"], ["update l1", "update l2"]]
    release = next(op for op in plan.waves[0] if op.name == "l1")
    assert isinstance(release, Update)
    assert release.hypernode.spec is not None
    assert (release.hypernode.spec.tier, release.hypernode.spec.tier_name) == (1, "leaf")
    assert [m.to_dict() for m in release.hypernode.members] == [
        {"type": "Node", "selector": {"exactMatch": {"name": "n1"}}}
    ]
    assert release.hypernode.metadata.labels == with_ownership(new, P).metadata.labels
    final = next(op for op in plan.waves[1] if op.name == "l1")
    assert isinstance(final, Update)
    assert not final.release
    assert final.observed is release.observed  # the writer applies it onto what the release returned
    assert final.hypernode == with_ownership(new, P)


def test_an_object_that_no_longer_parses_is_released_from_its_raw_spec() -> None:
    body = observed(leaf("l1", "n1", "n2")).__dict__
    raw = {
        "apiVersion": "topology.volcano.sh/v1alpha1",
        "kind": "HyperNode",
        "metadata": {
            "name": "l1",
            "labels": dict(body["labels"]),
            "annotations": {"not a valid key!": "written by an older version"},
            "resourceVersion": "7",
            "uid": "u-l1",
        },
        "spec": json.loads(body["spec_json"]),
    }
    unreadable = Observed.from_dict(raw)
    assert unreadable.hypernode is None
    assert unreadable.owner == P
    seen = {"l1": unreadable, "l2": observed(leaf("l2", "n3", "n4"))}
    plan = plan_changes(P, desired(leaf("l1", "n1", "n3"), leaf("l2", "n2", "n4")), seen)
    assert shape(plan) == [["release l1", "release l2"], ["update l1", "update l2"]]
    release = next(op for op in plan.waves[0] if op.name == "l1")
    assert isinstance(release, Update)
    assert [m.to_dict() for m in release.hypernode.members] == [
        {"type": "Node", "selector": {"exactMatch": {"name": "n1"}}}
    ]


def test_what_cannot_be_ordered_is_still_written_and_named() -> None:
    # One DELETE event for a leaf its (unchanged) parent still lists: no order keeps the
    # parent's reference valid, so the delete is written as before and reported.
    before = [leaf("l1", "n1"), leaf("l2", "n2"), parent("s1", "l1", "l2")]
    seen = {h.name: observed(h) for h in before}
    plan = plan_changes(P, {}, seen, delete=["l2"])
    assert shape(plan) == [["delete l2"]]
    assert plan.unordered == ["l2"]


def test_releases_are_not_deletes_for_the_deletion_guard() -> None:
    leaves = [leaf(f"l{i}", f"n{i}") for i in range(4)]
    renamed = [leaf(f"r{i}", f"n{i}") for i in range(2)]
    before = [*leaves, parent("s1", *(h.name for h in leaves))]
    after = [*renamed, *leaves[2:], parent("s1", "l2", "l3", *(h.name for h in renamed))]
    plan = check_transition(before, after)
    deleting = sum(isinstance(op, Delete) for op in plan.operations)
    assert deleting == plan.counts()["delete"] == 2
    assert plan.counts()["release"] == 1
    assert DeletionGuard().refusal(owned=5, deleting=deleting, desired=5) is None


def test_someone_elses_object_is_never_written_while_ours_move() -> None:
    before = [leaf("l1", "n1", "n2"), leaf("l2", "n3")]
    foreign = observed(leaf("x", "n9"), owner="someone-else")
    seen = {h.name: observed(h) for h in before} | {"x": foreign}
    plan = plan_changes(P, desired(leaf("l1", "n1"), leaf("l2", "n2", "n3"), leaf("x", "n8")), seen)
    assert [(c.name, c.owner) for c in plan.conflicts] == [("x", "provider someone-else")]
    assert "x" not in {op.name for op in plan.operations}
    assert shape(plan) == [["update l1"], ["update l2"]]


def test_a_steady_state_plans_nothing() -> None:
    tree = [leaf("l1", "n1"), leaf("l2", "n2"), parent("s1", "l1", "l2"), parent("root", "s1", tier=3)]
    plan, _start, _end = plan_for(tree, tree)
    assert plan.waves == []
    assert sorted(plan.unchanged) == ["l1", "l2", "root", "s1"]
    assert plan.counts() == {"create": 0, "update": 0, "release": 0, "delete": 0, "unchanged": 4}


def test_a_full_size_fabric_reshuffled_in_a_few_waves() -> None:
    """~550 HyperNodes over 16,384 nodes: every leaf trades half its nodes and half the leaves change spine."""
    leaves, spines, cores = 512, 32, 4

    def fabric(shift: int) -> list[HyperNode]:
        objects: list[HyperNode] = []
        for j in range(leaves):
            # node i of leaf j is n(j, i); with a shift, the odd ones belong to leaf j + shift
            nodes = [f"n{(j - shift * (i % 2)) % leaves:03d}-{i:02d}" for i in range(32)]
            objects.append(leaf(f"leaf-{j:03d}", *nodes))
        per_spine = leaves // spines
        for s in range(spines):
            # with a shift, the odd leaves of each spine move to the next spine
            members = [f"leaf-{j:03d}" for j in range(leaves) if (j // per_spine + shift * (j % 2)) % spines == s]
            objects.append(parent(f"spine-{s:02d}", *members))
        for c in range(cores):
            objects.append(parent(f"core-{c}", *(f"spine-{s:02d}" for s in range(c, spines, cores)), tier=3))
        objects.append(parent("top", *(f"core-{c}" for c in range(cores)), tier=4))
        return objects

    before, after = fabric(0), fabric(1)
    plan, _start, _end = plan_for(before, after)
    counts = plan.counts()
    assert counts["update"] == leaves + spines
    assert counts["release"] == leaves + spines
    assert counts["unchanged"] == cores + 1
    # one release wave, then one claim wave: leaves and spines can all claim at once
    assert [len(wave) for wave in plan.waves] == [leaves + spines, leaves + spines]
    assert all(isinstance(op, Update) and op.release for op in plan.waves[0])


# -- random transitions -------------------------------------------------------------------

NAMES = [f"h{i}" for i in range(14)]
NODES = [f"n{i}" for i in range(10)]


@dataclass
class Fabric:
    """A provider's tree as plain data: leaves hold nodes, spines hold HyperNodes."""

    tier: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)

    def copy(self) -> Fabric:
        return Fabric(
            dict(self.tier),
            {k: list(v) for k, v in self.nodes.items()},
            {k: list(v) for k, v in self.children.items()},
        )

    def names(self) -> list[str]:
        return sorted(self.tier)

    def parent_of(self, name: str) -> str | None:
        return next((p for p, kids in sorted(self.children.items()) if name in kids), None)

    def hypernodes(self) -> list[HyperNode]:
        built = [leaf(n, *nodes, tier=self.tier[n]) for n, nodes in self.nodes.items()]
        built += [parent(n, *kids, tier=self.tier[n]) for n, kids in self.children.items()]
        return built

    def remove(self, name: str) -> None:
        self.tier.pop(name)
        self.nodes.pop(name, None)
        self.children.pop(name, None)
        for kids in self.children.values():
            if name in kids:
                kids.remove(name)

    def prune(self) -> None:
        """Drop empty HyperNodes (the API refuses them), and the references to them."""
        while empty := [n for n in self.names() if not (self.nodes.get(n) or self.children.get(n))]:
            for name in empty:
                self.remove(name)

    def unused_name(self, choice: Callable[[Sequence[str]], str]) -> str | None:
        free = [n for n in NAMES if n not in self.tier]
        return choice(free) if free else None


@st.composite
def fabrics(draw: st.DrawFn) -> Fabric:
    fabric = Fabric()
    names = iter(draw(st.permutations(NAMES)))
    nodes = draw(st.permutations(NODES))[: draw(st.integers(1, 8))]
    tier = draw(st.integers(1, 2))
    count = draw(st.integers(1, min(4, len(nodes))))
    homes = draw(st.lists(st.integers(0, count - 1), min_size=len(nodes), max_size=len(nodes)))
    level = []
    for index in range(count):
        name = next(names)
        fabric.tier[name], fabric.nodes[name] = tier, [n for n, h in zip(nodes, homes, strict=True) if h == index]
        level.append(name)
    for _ in range(draw(st.integers(1, 3))):  # 2-4 tiers
        tier += draw(st.integers(1, 2))
        count = draw(st.integers(1, max(1, len(level) - 1)))
        homes = draw(st.lists(st.integers(-1, count - 1), min_size=len(level), max_size=len(level)))
        parents = []
        for index in range(count):
            name = next(names)
            fabric.tier[name], fabric.children[name] = (
                tier,
                [c for c, h in zip(level, homes, strict=True) if h == index],
            )
            parents.append(name)
        level = [p for p in parents if fabric.children[p]]
        if len(level) <= 1:
            break
    fabric.prune()
    return fabric


def _mutations(fabric: Fabric, draw: st.DrawFn) -> None:
    """One random change to ``fabric``; the caller keeps it only when the result is still a strict tree."""

    def pick(options: Sequence[str]) -> str:
        return draw(st.sampled_from(sorted(options)))

    leaves = sorted(fabric.nodes)
    kind = draw(
        st.sampled_from(
            [
                "move node",
                "swap nodes",
                "rename",
                "move subtree",
                "split",
                "merge",
                "tiers",
                "add",
                "delete",
                "drop node",
            ]
        )
    )
    if kind == "move node" and len(leaves) > 1:
        a = pick(leaves)
        b = pick([x for x in leaves if x != a])
        node = pick(fabric.nodes[a])
        fabric.nodes[a].remove(node)
        fabric.nodes[b].append(node)
    elif kind == "swap nodes" and len(leaves) > 1:
        a = pick(leaves)
        b = pick([x for x in leaves if x != a])
        x, y = pick(fabric.nodes[a]), pick(fabric.nodes[b])
        fabric.nodes[a][fabric.nodes[a].index(x)] = y
        fabric.nodes[b][fabric.nodes[b].index(y)] = x
    elif kind == "rename":
        old, new = pick(fabric.names()), fabric.unused_name(pick)
        if new is not None:
            fabric.tier[new] = fabric.tier.pop(old)
            if old in fabric.nodes:
                fabric.nodes[new] = fabric.nodes.pop(old)
            else:
                fabric.children[new] = fabric.children.pop(old)
            for kids in fabric.children.values():
                if old in kids:
                    kids[kids.index(old)] = new
    elif kind == "move subtree":
        moving = pick(fabric.names())
        targets = [
            s for s in fabric.children if fabric.tier[s] > fabric.tier[moving] and moving not in fabric.children[s]
        ]
        old_parent = fabric.parent_of(moving)
        if old_parent is not None:
            fabric.children[old_parent].remove(moving)
        if bool(targets) and draw(st.booleans()):
            fabric.children[pick(targets)].append(moving)
    elif kind == "split" and (splittable := [x for x in leaves if len(fabric.nodes[x]) > 1]):
        a, fresh = pick(splittable), fabric.unused_name(pick)
        if fresh is not None:
            cut = draw(st.integers(1, len(fabric.nodes[a]) - 1))
            fabric.nodes[a], fabric.nodes[fresh] = fabric.nodes[a][:cut], fabric.nodes[a][cut:]
            fabric.tier[fresh] = fabric.tier[a]
            if (home := fabric.parent_of(a)) is not None:
                fabric.children[home].append(fresh)
    elif kind == "merge" and len(leaves) > 1:
        a = pick(leaves)
        b = pick([x for x in leaves if x != a])
        fabric.nodes[a] += fabric.nodes[b]
        fabric.remove(b)
    elif kind == "tiers":
        threshold = draw(st.integers(1, 6))
        delta = draw(st.sampled_from([-1, 1]))
        for name in fabric.names():
            if fabric.tier[name] >= threshold:
                fabric.tier[name] = max(0, fabric.tier[name] + delta)
    elif kind == "add":
        free = [n for n in NODES if all(n not in v for v in fabric.nodes.values())]
        if free:
            node = pick(free)
            new = fabric.unused_name(pick) if draw(st.booleans()) else None
            if new is None:
                fabric.nodes[pick(leaves)].append(node)
            else:
                fabric.tier[new], fabric.nodes[new] = draw(st.integers(1, 2)), [node]
                homes = [s for s in fabric.children if fabric.tier[s] > fabric.tier[new]]
                if bool(homes) and draw(st.booleans()):
                    fabric.children[pick(homes)].append(new)
    elif kind == "delete":
        fabric.remove(pick(fabric.names()))
    elif kind == "drop node":
        a = pick(leaves)
        fabric.nodes[a].remove(pick(fabric.nodes[a]))
    fabric.prune()


@st.composite
def transitions(draw: st.DrawFn) -> tuple[list[HyperNode], list[HyperNode]]:
    before = draw(fabrics())
    if draw(st.integers(0, 4)) == 0:
        after = draw(fabrics())  # anything at all: names reused in other roles, tiers inverted, ...
    else:
        after = before.copy()
        for _ in range(draw(st.integers(1, 4))):
            if not after.tier:
                break
            changed = after.copy()
            _mutations(changed, draw)
            if not moment_problems({h.name: h for h in changed.hypernodes()}):
                after = changed
    return before.hypernodes(), after.hypernodes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transitions(), st.data())
def test_every_write_of_a_random_transition_keeps_a_strict_tree(
    transition: tuple[list[HyperNode], list[HyperNode]], data: st.DataObject
) -> None:
    before, after = transition
    plan, start, end = plan_for(before, after)
    assert plan.conflicts == []
    assert plan.unordered == []
    for verb in sorted({_verb(op) for op in plan.operations}):
        event(f"has {verb}")
    if any(_is_placeholder(op) for op in plan.operations):
        event("has placeholder release")
    event(f"{len(plan.waves)} waves")

    finished = execute(plan, start, lambda wave: data.draw(st.permutations(wave)))
    assert spec_of(finished) == spec_of(end)

    # No needless writes: what already matches is left alone.
    same = {n for n in start.keys() & end.keys() if spec_of({n: start[n]}) == spec_of({n: end[n]})}
    assert set(plan.unchanged) == same
    written = [op.name for op in plan.operations]
    assert not same & set(written)
    # A name is written at most twice: its release, then its final form.
    for name in set(written):
        ops = [op for op in plan.operations if op.name == name]
        assert len(ops) <= 2, f"{name} is written {len(ops)} times"
        if len(ops) == 2:
            assert [isinstance(op, Update) and op.release for op in ops] == [True, False]


def test_random_transitions_from_a_seed_reach_their_target() -> None:
    """A plain-random sweep with bigger trees than the property test draws."""
    rng = random.Random(20240611)
    for _ in range(40):
        nodes = [f"n{i}" for i in range(rng.randint(4, 40))]

        def tree(rng: random.Random = rng, nodes: list[str] = nodes) -> list[HyperNode]:
            shuffled = rng.sample(nodes, len(nodes))
            cut = sorted(rng.sample(range(1, len(nodes)), rng.randint(1, min(6, len(nodes) - 1))))
            groups = [shuffled[a:b] for a, b in itertools.pairwise([0, *cut, len(nodes)])]
            names = rng.sample([f"x{i}" for i in range(12)], len(groups))
            leaves = [leaf(n, *g) for n, g in zip(names, groups, strict=True)]
            spine_names = rng.sample([f"s{i}" for i in range(4)], rng.randint(1, min(3, len(leaves))))
            spines: dict[str, list[str]] = {s: [] for s in spine_names}
            for name in names:
                spines[rng.choice(spine_names)].append(name)
            return [*leaves, *(parent(s, *kids) for s, kids in spines.items() if kids)]

        plan, start, end = plan_for(tree(), tree())
        finished = execute(plan, start, lambda wave: rng.sample(wave, len(wave)), every_subset_up_to=4)
        assert spec_of(finished) == spec_of(end)
