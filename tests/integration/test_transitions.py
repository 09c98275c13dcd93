"""Release before claim, seen from outside: a watcher checks every state the scheduler could see.

Six transitions go through the real writer into the real API server; a watch follows every
intermediate state and checks that no node is in two leaves, no HyperNode is under two
parents, and no member names a HyperNode that does not exist.
"""

from __future__ import annotations

import random

from kubernetes import client

from tests.builders import leaf, parent
from tests.faultproxy import FaultProxy, Rule
from tests.integration.conftest import WriterFactory, cluster_hypernodes, drain, members, wait_for
from tests.integration.watcher import StateWatcher
from volcano_topology.api import HyperNode
from volcano_topology.plan import DeletionGuard
from volcano_topology.provider import Event
from volcano_topology.retries import RetryPolicy

# A reshuffle renames every leaf: more than the default guard lets one snapshot delete.
EVERYTHING_MAY_GO = DeletionGuard(max_delete_fraction=1.0)


def fabric(racks: dict[str, list[str]], spines: dict[str, list[str]], core: str | None = "t-core") -> list[HyperNode]:
    found = [leaf(name, *nodes) for name, nodes in racks.items()]
    found += [parent(name, *children) for name, children in spines.items()]
    if core is not None:
        found.append(parent(core, *spines, tier=3))
    return found


def nodes(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(count)]


BEFORE = fabric(
    {"t-l1": ["n1", "n2"], "t-l2": ["n3", "n4"], "t-l3": ["n5", "n6"], "t-l4": ["n7", "n8"]},
    {"t-s1": ["t-l1", "t-l2"], "t-s2": ["t-l3", "t-l4"]},
)
TRANSITIONS = {
    "a node moves": fabric(
        {"t-l1": ["n2"], "t-l2": ["n3", "n4", "n1"], "t-l3": ["n5", "n6"], "t-l4": ["n7", "n8"]},
        {"t-s1": ["t-l1", "t-l2"], "t-s2": ["t-l3", "t-l4"]},
    ),
    "a leaf is renamed": fabric(
        {"t-l1b": ["n2", "n1"], "t-l2": ["n3", "n4"], "t-l3": ["n5", "n6"], "t-l4": ["n7", "n8"]},
        {"t-s1": ["t-l1b", "t-l2"], "t-s2": ["t-l3", "t-l4"]},
    ),
    "two leaves swap nodes": fabric(
        {"t-l1b": ["n3", "n1"], "t-l2": ["n2", "n4"], "t-l3": ["n5", "n6"], "t-l4": ["n7", "n8"]},
        {"t-s1": ["t-l1b", "t-l2"], "t-s2": ["t-l3", "t-l4"]},
    ),
    "a leaf moves to another spine": fabric(
        {"t-l1b": ["n3", "n1"], "t-l2": ["n2", "n4"], "t-l3": ["n5", "n6"], "t-l4": ["n7", "n8"]},
        {"t-s1": ["t-l1b"], "t-s2": ["t-l3", "t-l4", "t-l2"]},
    ),
    "a spine is replaced by a new one": fabric(
        {"t-l1b": ["n3", "n1"], "t-l2": ["n2", "n4"], "t-l3": ["n5", "n6"], "t-l4": ["n7", "n8"]},
        {"t-s1": ["t-l1b"], "t-s3": ["t-l3", "t-l4", "t-l2"]},
    ),
}


def reshuffle(seed: int) -> list[HyperNode]:
    """64 nodes dealt at random over 8 leaves under 2 spines."""
    pool = nodes("n", 64)
    random.Random(seed).shuffle(pool)
    racks = {f"t-r{i}": pool[i * 8 : (i + 1) * 8] for i in range(8)}
    return fabric(racks, {"t-sa": [f"t-r{i}" for i in range(4)], "t-sb": [f"t-r{i}" for i in range(4, 8)]})


def same(api: client.ApiClient, want: list[HyperNode]) -> bool:
    have = cluster_hypernodes(api, "fabric")
    return set(have) == {h.name for h in want} and all(
        sorted(members(have[h.name])) == sorted(m.selector.exact_match.name for m in h.members)  # type: ignore[union-attr]
        for h in want
    )


async def test_no_state_between_snapshots_breaks_the_tree(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(guard=EVERYTHING_MAY_GO)
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.snapshot(BEFORE)])
    watcher = StateWatcher(hypernode_api, "fabric").start()
    steps = [*TRANSITIONS.items(), ("64 nodes reshuffled", reshuffle(1)), ("reshuffled again", reshuffle(2))]
    try:
        for what, after in steps:
            assert await writer.process(channel, [Event.snapshot(after)]), what
            assert drain(channel) == [], what
            assert same(hypernode_api, after), what
    finally:
        await wait_for(lambda: set(watcher.current) == {h.name for h in steps[-1][1]})
        watcher.stop()
    assert watcher.states >= 30, "the watcher saw the writes one by one"
    assert watcher.violations == [], f"{watcher.bad_states()} bad states of {watcher.states}: {watcher.violations[:5]}"
    print(f"\nwatcher: {watcher.states} states, {len(watcher.violations)} violations")


async def test_a_plan_that_fails_half_way_leaves_a_strict_tree_and_is_retried(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(
        retry=RetryPolicy(initial=0.01, maximum=0.02, jitter=0.0, attempts=2, deadline=1.0),
        resync_after_failure=0.2,
        guard=EVERYTHING_MAY_GO,
    )
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.snapshot(reshuffle(3))])
    watcher = StateWatcher(hypernode_api, "fabric").start()
    after = reshuffle(4)
    try:
        # The first dozen writes fail: some writes of a wave land and some do not, and the batch is kept.
        outage = faults.add(Rule("PATCH", "/hypernodes", status=503, reason="ServiceUnavailable", times=12))
        assert not await writer.process(channel, [Event.snapshot(after)])
        assert outage.hits > 0
        assert channel.retained, "the snapshot is kept for a retry"
        outage.times = 0
        assert await writer.process(channel, list(channel.retained))
        assert same(hypernode_api, after)
    finally:
        await wait_for(lambda: set(watcher.current) == {h.name for h in after})
        watcher.stop()
    assert watcher.violations == [], f"{watcher.bad_states()} bad states of {watcher.states}: {watcher.violations[:5]}"


async def test_single_events_of_a_move_are_ordered_release_first(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.snapshot(BEFORE)])
    watcher = StateWatcher(hypernode_api, "fabric").start()
    try:
        # A node moves and a leaf goes to another spine, as single events, claims listed first.
        events = [
            Event.update(parent("t-s2", "t-l3", "t-l4", "t-l2")),
            Event.update(leaf("t-l2", "n3", "n4", "n1")),
            Event.update(leaf("t-l1", "n2")),
            Event.update(parent("t-s1", "t-l1")),
        ]
        assert await writer.process(channel, events)
        assert drain(channel) == []
    finally:
        await wait_for(lambda: "t-l2" in watcher.current and len(watcher.current["t-l2"].members) == 3)
        watcher.stop()
    assert watcher.violations == [], watcher.violations
