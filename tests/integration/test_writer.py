"""The writer against a real API server: events, order, coalescing, ownership, guard, tree rules."""

from __future__ import annotations

import asyncio

from kubernetes import client

from tests.builders import leaf, parent, regex_parent
from tests.faultproxy import FaultProxy
from tests.integration.conftest import WriterFactory, cluster_hypernodes, drain, members, wait_for
from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.plan import DeletionGuard
from volcano_topology.provider import (
    DeletionRefused,
    Event,
    InvalidHyperNode,
    MalformedEvent,
    OwnershipConflict,
    TopologyViolation,
)


async def test_create_update_delete(make_writer: WriterFactory, hypernode_api: client.ApiClient) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("w-leaf", "n1", "n2"))])
    obj = cluster_hypernodes(hypernode_api)["w-leaf"]
    assert members(obj) == ["n1", "n2"]
    assert obj["metadata"]["labels"] == ownership.ownership_labels("fabric")
    assert {f["manager"] for f in obj["metadata"]["managedFields"]} == {"volcano-topology/fabric"}

    assert await writer.process(channel, [Event.update(leaf("w-leaf", "n1", "n3"))])
    assert members(cluster_hypernodes(hypernode_api)["w-leaf"]) == ["n1", "n3"]
    update_was_apply = [
        f["operation"] for f in cluster_hypernodes(hypernode_api)["w-leaf"]["metadata"]["managedFields"]
    ]
    assert "Apply" in update_was_apply

    assert await writer.process(channel, [Event.delete("w-leaf")])
    assert "w-leaf" not in cluster_hypernodes(hypernode_api)
    assert await writer.process(channel, [Event.delete("w-leaf")]), "deleting what is gone is already done"
    assert drain(channel) == []
    assert channel.stats.writes == {"create": 1, "update": 1, "delete": 1}


async def test_snapshot_writes_children_first_and_a_repeat_writes_nothing(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    tree = [
        parent("s-root", "s-spine", tier=3),
        parent("s-spine", "s-l1", "s-l2"),
        leaf("s-l1", "n1"),
        leaf("s-l2", "n2"),
    ]
    assert await writer.process(channel, [Event.snapshot(tree)])
    created = [r.name for r in faults.writes()]
    assert len(created) == 4
    assert created.index("s-spine") > max(created.index("s-l1"), created.index("s-l2"))
    assert created.index("s-root") > created.index("s-spine")

    assert (faults.count("GET"), len(faults.requests)) == (2, 6), "the cache's LIST and WATCH, then four creates"
    faults.reset()
    assert await writer.process(channel, [Event.snapshot(tree)])
    assert faults.writes() == [], "an identical snapshot makes no write request"
    assert faults.requests == [], "and no request at all: the plan comes from the watch-fed cache"
    assert channel.stats.writes == {"create": 4}


async def test_snapshot_diff_updates_parents_before_deleting_children(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    before = [parent("d-spine", "d-l1", "d-l2", "d-l3"), leaf("d-l1", "n1"), leaf("d-l2", "n2"), leaf("d-l3", "n3")]
    assert await writer.process(channel, [Event.snapshot(before)])
    faults.reset()
    after = [parent("d-spine", "d-l1", "d-l2"), leaf("d-l1", "n1"), leaf("d-l2", "n2", "n3")]
    assert await writer.process(channel, [Event.snapshot(after)])
    writes = [(r.method, r.name) for r in faults.writes()]
    assert writes.index(("PATCH", "d-spine")) < writes.index(("DELETE", "d-l3"))
    assert sorted(writes) == [("DELETE", "d-l3"), ("PATCH", "d-l2"), ("PATCH", "d-spine")]
    objects = cluster_hypernodes(hypernode_api)
    assert set(objects) == {"d-spine", "d-l1", "d-l2"}
    assert members(objects["d-l2"]) == ["n2", "n3"]


async def test_create_delete_create_of_one_name_ends_created(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    events = [Event.create(leaf("o-leaf", "n1")), Event.delete("o-leaf"), Event.create(leaf("o-leaf", "n2"))]
    assert await writer.process(channel, events)
    assert members(cluster_hypernodes(hypernode_api)["o-leaf"]) == ["n2"]
    assert channel.stats.superseded == 2
    assert [(r.method, r.status) for r in faults.writes()] == [("PATCH", 201)], "superseded events were never sent"


async def test_queued_events_are_coalesced_by_the_running_writer(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    for i in range(20):
        await channel.events.put(Event.update(leaf("c-leaf", f"n{i}")))
    task = asyncio.create_task(writer.run(channel))
    try:
        await wait_for(lambda: channel.stats.batches >= 1 and channel.idle.is_set())
    finally:
        task.cancel()
    assert members(cluster_hypernodes(hypernode_api)["c-leaf"]) == ["n19"]
    assert channel.stats.superseded == 19
    assert len(faults.writes()) == 1


async def test_a_hundred_providers_in_parallel(make_writer: WriterFactory, hypernode_api: client.ApiClient) -> None:
    writer = make_writer(concurrency=16)
    channels = [writer.open(f"p{i:03d}") for i in range(100)]

    def tree(i: int) -> list:  # type: ignore[type-arg]
        return [
            parent(f"p{i:03d}-spine", f"p{i:03d}-a", f"p{i:03d}-b"),
            leaf(f"p{i:03d}-a", f"p{i}-n1"),
            leaf(f"p{i:03d}-b", f"p{i}-n2"),
        ]

    results = await asyncio.gather(*(writer.process(c, [Event.snapshot(tree(i))]) for i, c in enumerate(channels)))
    assert all(results)
    objects = cluster_hypernodes(hypernode_api)
    assert len(objects) == 300
    for i in range(100):
        assert objects[f"p{i:03d}-spine"]["metadata"]["labels"][ownership.SOURCE_LABEL] == f"p{i:03d}"
    assert all(drain(c) == [] for c in channels)


async def test_objects_of_others_are_never_touched(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    objects = client.CustomObjectsApi(hypernode_api)
    handmade = leaf("x-handmade", "n1").to_dict()
    objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, handmade)
    writer = make_writer()
    other = writer.open("other")
    assert await writer.process(other, [Event.create(leaf("x-others", "n2"))])
    faults.reset()

    channel = writer.open("fabric")
    assert not await writer.process(
        channel, [Event.create(leaf("x-handmade", "n9")), Event.update(leaf("x-others", "n9"))]
    )
    assert not await writer.process(channel, [Event.delete("x-handmade")])
    replies = drain(channel)
    assert [(type(r.error), r.error.name) for r in replies] == [
        (OwnershipConflict, "x-handmade"), (OwnershipConflict, "x-others"), (OwnershipConflict, "x-handmade"),
    ]  # fmt: skip
    assert "an object not managed by volcano-topology" in str(replies[0].error)
    assert "provider other" in str(replies[1].error)
    assert faults.writes() == []

    # A snapshot naming someone else's object is rejected whole: its other objects are not written either.
    assert not await writer.process(channel, [Event.snapshot([leaf("x-handmade", "n9"), leaf("x-mine", "n8")])])
    assert isinstance(drain(channel)[0].error, OwnershipConflict)
    assert faults.writes() == []
    assert members(cluster_hypernodes(hypernode_api)["x-handmade"]) == ["n1"]


async def test_deletion_guard(make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    four = [leaf(f"g-l{i}", f"n{i}") for i in range(4)]
    assert await writer.process(channel, [Event.snapshot(four)])
    faults.reset()

    assert not await writer.process(channel, [Event.snapshot([])])
    assert not await writer.process(channel, [Event.snapshot(four[:1])])
    replies = drain(channel)
    assert [type(r.error) for r in replies] == [DeletionRefused, DeletionRefused]
    assert "the snapshot is empty and would delete all 4" in str(replies[0].error)
    assert "would delete 3 of 4 HyperNodes this provider owns (75%)" in str(replies[1].error)
    assert channel.stats.guard_trips == 2
    assert faults.writes() == []
    assert len(cluster_hypernodes(hypernode_api, "fabric")) == 4

    permissive = make_writer(guard=DeletionGuard(max_delete_fraction=1.0, allow_empty=True))
    channel = permissive.open("fabric")
    assert await permissive.process(channel, [Event.snapshot([])])
    assert cluster_hypernodes(hypernode_api, "fabric") == {}


async def test_tree_violations_are_replies_and_nothing_is_written(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    bad_sets = {
        "one parent": [leaf("t-l1", "n1"), parent("t-a", "t-l1"), parent("t-b", "t-l1")],
        "no cycles": [parent("t-a", "t-b", tier=3), parent("t-b", "t-a", tier=4)],
        "parent tier above children": [leaf("t-l1", "n1", tier=2), parent("t-a", "t-l1", tier=2)],
        "node in one leaf": [leaf("t-l1", "n1"), leaf("t-l2", "n1")],
        "exactMatch for HyperNode members": [leaf("t-l1", "n1"), regex_parent("t-a", "t-l.*")],
    }
    for rule, hypernodes in bad_sets.items():
        assert not await writer.process(channel, [Event.snapshot(hypernodes)])
        replies = drain(channel)
        assert replies, rule
        assert all(isinstance(r.error, TopologyViolation) for r in replies)
        assert rule in [p.rule for r in replies for p in r.error.problems], rule
    assert faults.writes() == []
    assert cluster_hypernodes(hypernode_api) == {}


async def test_invalid_objects_are_replies_naming_the_rule(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    bad = leaf("i-leaf", "n1").model_copy(deep=True)
    assert bad.spec is not None
    assert bad.spec.members is not None
    bad.spec.members[0].selector.exact_match.name = "N_1"  # type: ignore[union-attr]
    assert not await writer.process(channel, [Event.create(bad)])
    assert not await writer.process(channel, [Event.snapshot([bad, leaf("i-good", "n2")])])
    replies = drain(channel)
    assert [type(r.error) for r in replies] == [InvalidHyperNode, InvalidHyperNode]
    problem = replies[0].error.problems[0]
    assert (problem.path, problem.level) == ("spec.members[0].selector.exactMatch.name", "schema")
    assert "pattern" in problem.rule
    assert faults.writes() == []


async def test_single_events_isolate_the_offender(make_writer: WriterFactory, hypernode_api: client.ApiClient) -> None:
    writer = make_writer(claim_wait=0)  # no waiting for a release that could make the claim right
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("s-l1", "n1"))])
    ok = await writer.process(channel, [Event.create(leaf("s-l2", "n2")), Event.create(leaf("s-l3", "n1"))])
    assert not ok
    [reply] = drain(channel)
    assert isinstance(reply.error, TopologyViolation)
    assert reply.event is not None
    assert reply.event.target == "s-l3"
    assert set(cluster_hypernodes(hypernode_api)) == {"s-l1", "s-l2"}


async def test_post_process_hook_cannot_break_ownership(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    def augment(hypernode):  # type: ignore[no-untyped-def]
        hypernode = hypernode.model_copy(deep=True)
        hypernode.metadata.labels = {ownership.SOURCE_LABEL: "hijacked", "rack": "r1"}
        hypernode.metadata.annotations = {"vendor.example.com/switch-serial": "MT123"}
        return hypernode

    writer = make_writer()
    channel = writer.open("fabric", transform=augment)
    assert await writer.process(channel, [Event.create(leaf("h-leaf", "n1"))])
    metadata = cluster_hypernodes(hypernode_api)["h-leaf"]["metadata"]
    assert metadata["labels"] == {**ownership.ownership_labels("fabric"), "rack": "r1"}
    assert metadata["annotations"] == {"vendor.example.com/switch-serial": "MT123"}


async def test_malformed_events_are_replied_and_the_rest_applies(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    junk: list = [{"type": "CREATE"}, Event.delete(""), Event.create(leaf("m-leaf", "n1"))]  # type: ignore[type-arg]
    assert await writer.process(channel, junk)
    replies = drain(channel)
    assert [type(r.error) for r in replies] == [MalformedEvent, MalformedEvent]
    assert replies[0].event is None
    assert "m-leaf" in cluster_hypernodes(hypernode_api)


async def test_a_flooding_provider_is_slowed_by_the_bounded_queue(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(queue_size=4)
    channel = writer.open("flood")
    blocked = 0

    async def flood() -> None:
        nonlocal blocked
        for i in range(60):
            if channel.events.full():
                blocked += 1
            await channel.events.put(Event.update(leaf(f"f-leaf-{i % 6}", f"n{i}")))
            assert channel.events.qsize() <= 4

    task = asyncio.create_task(writer.run(channel))
    try:
        await flood()
        await wait_for(lambda: channel.stats.events.total() == 60 and channel.idle.is_set())
    finally:
        task.cancel()
    assert blocked > 0, "the producer had to wait for the writer"
    objects = cluster_hypernodes(hypernode_api, "flood")
    assert {name: members(o) for name, o in objects.items()} == {f"f-leaf-{k}": [f"n{54 + k}"] for k in range(6)}


async def test_dry_run_writes_nothing(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(dry_run=True)
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.snapshot([leaf("y-l1", "n1"), parent("y-s", "y-l1")])])
    assert faults.writes() == []
    assert cluster_hypernodes(hypernode_api) == {}


async def test_fields_dropped_later_are_removed_and_then_stay_quiet(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    first = leaf("r-leaf", "n1")
    assert first.spec is not None
    first.spec.tier_name = "leaf"
    first.metadata.labels = {"rack": "r1"}
    assert await writer.process(channel, [Event.create(first)])
    assert await writer.process(channel, [Event.update(leaf("r-leaf", "n1"))])
    obj = cluster_hypernodes(hypernode_api)["r-leaf"]
    assert "tierName" not in obj["spec"]
    assert "rack" not in obj["metadata"]["labels"]
    faults.reset()
    assert await writer.process(channel, [Event.update(leaf("r-leaf", "n1"))])
    assert faults.writes() == [], "once removed, nothing is left to write"


async def test_two_events_claiming_one_node_never_both_land(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(claim_wait=0)
    channel = writer.open("fabric")
    assert not await writer.process(channel, [Event.create(leaf("z-a", "n5")), Event.create(leaf("z-b", "n5"))])
    [reply] = drain(channel)
    assert isinstance(reply.error, TopologyViolation)
    assert set(cluster_hypernodes(hypernode_api)) == {"z-a"}, "the first lands, the second is refused"


async def test_a_move_as_two_updates_claim_first_lands_without_a_reply(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.snapshot([leaf("mv-a", "n1", "n2"), leaf("mv-b", "n3")])])
    faults.reset()
    # The claiming leaf comes first; the release only after it, in the same batch.
    assert await writer.process(channel, [Event.update(leaf("mv-b", "n3", "n1")), Event.update(leaf("mv-a", "n2"))])
    assert drain(channel) == []
    objects = cluster_hypernodes(hypernode_api)
    assert (members(objects["mv-a"]), members(objects["mv-b"])) == (["n2"], ["n3", "n1"])
    assert [w.name for w in faults.writes()] == ["mv-a", "mv-b"], "the release is written before the claim"


async def test_a_claim_waits_for_a_release_that_comes_in_a_later_batch(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(claim_wait=30)
    channel = writer.open("fabric")
    task = asyncio.create_task(writer.run(channel))
    try:
        await channel.events.put(Event.snapshot([leaf("cw-a", "n1", "n2"), leaf("cw-b", "n3")]))
        await wait_for(lambda: channel.idle.is_set() and "cw-b" in channel.owned)
        await channel.events.put(Event.update(leaf("cw-b", "n3", "n1")))  # claims n1, still in cw-a
        await wait_for(lambda: "cw-b" in channel.held)
        assert drain(channel) == [], "a claim is not refused while its release may still come"
        assert members(cluster_hypernodes(hypernode_api)["cw-b"]) == ["n3"]
        await channel.events.put(Event.update(leaf("cw-a", "n2")))  # the release
        await wait_for(lambda: channel.idle.is_set() and not channel.held)
        objects = cluster_hypernodes(hypernode_api)
        assert (members(objects["cw-a"]), members(objects["cw-b"])) == (["n2"], ["n3", "n1"])
        assert drain(channel) == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_claim_whose_release_never_comes_is_refused_after_the_wait(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(claim_wait=0.5)
    channel = writer.open("fabric")
    task = asyncio.create_task(writer.run(channel))
    try:
        await channel.events.put(Event.snapshot([leaf("cn-a", "n1"), leaf("cn-b", "n3")]))
        await wait_for(lambda: channel.idle.is_set() and "cn-b" in channel.owned)
        started = asyncio.get_running_loop().time()
        await channel.events.put(Event.update(leaf("cn-b", "n3", "n1")))
        await wait_for(lambda: not channel.replies.empty())
        waited = asyncio.get_running_loop().time() - started
        [reply] = drain(channel)
        assert isinstance(reply.error, TopologyViolation) and reply.error.name == "cn-b"
        assert waited >= 0.5, "refused only once the wait was over"
        assert members(cluster_hypernodes(hypernode_api)["cn-b"]) == ["n3"]
        await wait_for(lambda: channel.idle.is_set())
        assert channel.retained == [] and channel.held == {}, "nothing is kept after the refusal"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
