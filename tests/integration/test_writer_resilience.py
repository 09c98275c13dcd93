"""The writer survives bad events and its own bugs, stays bounded in an outage, and repairs drift by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from tests.builders import leaf, parent
from tests.faultproxy import FaultProxy, Rule
from tests.integration.conftest import WriterFactory, cluster_hypernodes, drain, members, wait_for
from tests.integration.watcher import StateWatcher
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.provider import Event, EventType, MalformedEvent, OwnershipConflict, TopologyViolation
from volcano_topology.retries import RetryPolicy
from volcano_topology.writer import ProviderChannel, Writer


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start(writer: Writer, channel: ProviderChannel, tasks: list[asyncio.Task[None]]) -> asyncio.Task[None]:
    task = asyncio.create_task(writer.run(channel))
    tasks.append(task)
    return task


async def settled(channel: ProviderChannel) -> None:
    await wait_for(lambda: channel.idle.is_set() and channel.events.empty() and not channel.suspects)


# -- a writer that cannot die ---------------------------------------------------------


async def test_an_event_whose_type_is_a_plain_string_is_replied_and_the_writer_goes_on(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    task = start(writer, channel, running)
    await channel.events.put(Event("CREATE", hypernode=leaf("ps-bad", "n1")))  # type: ignore[arg-type]
    await channel.events.put(Event.create(leaf("ps-good", "n2")))
    await wait_for(lambda: "ps-good" in channel.owned and channel.idle.is_set())
    [reply] = drain(channel)
    assert isinstance(reply.error, MalformedEvent)
    assert "EventType" in str(reply.error)
    assert not task.done(), "the writer is still running"
    assert set(cluster_hypernodes(hypernode_api)) == {"ps-good"}
    assert channel.stats.events == {"malformed": 1, "CREATE": 1}


async def test_an_unexpected_exception_is_logged_counted_and_the_batch_retried(
    make_writer: WriterFactory,
    faults: FaultProxy,
    hypernode_api: client.ApiClient,
    running: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = make_writer(crash_backoff=0.05)
    channel = writer.open("fabric")
    real_observe = writer._observe
    calls = 0

    async def buggy_observe(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("token refresh failed")  # not a KubeError: a bug or an auth plugin's failure
        return await real_observe(*args)

    writer._observe = buggy_observe  # type: ignore[method-assign]
    task = start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("ux-a", "n1")]))
    await wait_for(lambda: "ux-a" in channel.owned and channel.idle.is_set())
    assert not task.done()
    assert channel.stats.crashes == 2
    assert channel.stats.last_crash == "RuntimeError: token refresh failed"
    crashes = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(crashes) == 2 and all(r.exc_info for r in crashes), "logged with the traceback"
    assert set(cluster_hypernodes(hypernode_api)) == {"ux-a"}


async def test_readiness_names_a_writer_that_makes_no_progress(
    make_writer: WriterFactory, faults: FaultProxy, running: list[Any]
) -> None:
    policy = RetryPolicy(initial=0.05, maximum=0.1, jitter=0.01, attempts=2, deadline=2.0)
    writer = make_writer(retry=policy, resync_after_failure=0.2, stall_after=1.0)
    assert writer.cache is not None
    await writer.cache.wait_synced()  # the outage starts with the cluster's state known: the writes fail
    outage = faults.add(Rule(None, "/hypernodes", status=503, reason="ServiceUnavailable", times=10**6))
    channel = writer.open("fabric")
    start(writer, channel, running)
    assert writer.problems() == []
    await channel.events.put(Event.snapshot([leaf("rd-a", "n1")]))
    await wait_for(lambda: channel.retained != [])
    # The batch fails and is retried every 0.2 s; retries that keep failing are no progress.
    await wait_for(lambda: writer.problems() != [], within=5)
    assert channel.stats.failures["RetriesExhausted"] >= 3, "it did keep trying"
    assert any("provider fabric: 1 event(s) waiting" in p for p in writer.problems())
    outage.times = 0
    await settled(channel)
    assert writer.problems() == []


# -- bounded memory during an outage ----------------------------------------------------


async def test_ten_thousand_snapshots_during_an_outage_keep_one_snapshot(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    outage = faults.add(Rule(None, "/hypernodes", status=503, reason="ServiceUnavailable", times=10**9))
    policy = RetryPolicy(initial=0.01, maximum=0.02, jitter=0.0, attempts=2, deadline=1.0)
    writer = make_writer(retry=policy, resync_after_failure=0.05, queue_size=64)
    channel = writer.open("fabric")
    start(writer, channel, running)
    most_kept = 0
    for version in range(10_000):
        await channel.events.put(Event.snapshot([leaf("om-a", f"n{version}"), leaf("om-b", "m1")]))
        most_kept = max(most_kept, len(channel.retained))
    await wait_for(lambda: channel.events.empty() and channel.retained != [])
    most_kept = max(most_kept, len(channel.retained))
    assert most_kept == 1, "the kept state is one snapshot, however long the outage"
    [kept] = channel.retained
    assert kept.type is EventType.SNAPSHOT and kept.hypernodes[0].members[0].selector is not None
    assert members(kept.hypernodes[0].to_dict()) == ["n9999"], "and it is the newest one"
    drain(channel)
    outage.times = 0
    await wait_for(lambda: "om-a" in channel.owned and channel.idle.is_set() and not channel.retained)
    assert members(cluster_hypernodes(hypernode_api)["om-a"]) == ["n9999"]


# -- drift repair by name ---------------------------------------------------------------


def exact(obj: dict[str, Any]) -> list[str]:
    """Node names by exactMatch (a released leaf may hold a placeholder regexMatch member for a moment)."""
    return [m["selector"]["exactMatch"]["name"] for m in obj["spec"]["members"] if "exactMatch" in m["selector"]]


def foreign_edit(api: client.ApiClient, name: str, *nodes: str) -> dict[str, Any]:
    body = {"spec": {"members": [{"type": "Node", "selector": {"exactMatch": {"name": n}}} for n in nodes]}}
    edited: dict[str, Any] = client.CustomObjectsApi(api).patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, name, body, _content_type="application/merge-patch+json"
    )
    return edited


def foreign_delete(api: client.ApiClient, name: str) -> None:
    client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def echo_all(api: client.ApiClient, channel: ProviderChannel) -> None:
    """What the watch delivers after the writer's own writes."""
    for name, obj in cluster_hypernodes(api).items():
        channel.suspect(name, obj["metadata"]["resourceVersion"], deleted=False)


async def test_echoes_of_our_own_writes_are_never_drift(
    make_writer: WriterFactory,
    faults: FaultProxy,
    hypernode_api: client.ApiClient,
    running: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("ec-a", "n1"), leaf("ec-b", "n2"), parent("ec-s", "ec-a", "ec-b")]))
    await settled(channel)
    faults.reset()
    echo_all(hypernode_api, channel)
    await channel.events.put(Event.snapshot([leaf("ec-a", "n1", "n2"), parent("ec-s", "ec-a")]))  # ec-b deleted
    await settled(channel)
    echo_all(hypernode_api, channel)
    channel.suspect("ec-b", "999999", deleted=True)  # the DELETED event of our own delete
    await settled(channel)
    assert channel.stats.repairs == 0 and channel.stats.foreign_changes == 0
    assert not [r for r in caplog.records if "someone else" in r.getMessage()], "no false drift warning"
    assert sorted(w.name for w in faults.writes()) == ["ec-a", "ec-b", "ec-s"], "only the snapshot's own writes"


async def test_a_foreign_edit_and_delete_are_put_back_to_the_latest_desired_state(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("fe-a", "n1"), leaf("fe-b", "n2")]))
    await settled(channel)
    edited = foreign_edit(hypernode_api, "fe-a", "intruder")
    foreign_delete(hypernode_api, "fe-b")
    channel.suspect("fe-a", edited["metadata"]["resourceVersion"], deleted=False)
    channel.suspect("fe-b", None, deleted=True)
    await settled(channel)
    objects = cluster_hypernodes(hypernode_api)
    assert (members(objects["fe-a"]), members(objects["fe-b"])) == (["n1"], ["n2"])
    assert channel.stats.repairs == 2
    assert sum(channel.stats.events.values()) == 1, "events_total counts provider events only"


async def test_a_repair_never_undoes_a_newer_snapshot(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    """A snapshot v3 queued while an edit of X waits to be repaired: X ends at v3, never at v1."""
    writer = make_writer()
    channel = writer.open("fabric")
    await writer.process(channel, [Event.snapshot([leaf("nv-x", "n1"), leaf("nv-y", "n2")])])  # v1
    edited = foreign_edit(hypernode_api, "nv-x", "intruder")
    channel.suspect("nv-x", edited["metadata"]["resourceVersion"], deleted=False)
    await channel.events.put(Event.snapshot([leaf("nv-x", "n1", "n3"), leaf("nv-y", "n2")]))  # v2
    await channel.events.put(Event.snapshot([leaf("nv-x", "n3"), leaf("nv-y", "n2", "n1")]))  # v3: n1 moved
    start(writer, channel, running)
    await settled(channel)
    objects = cluster_hypernodes(hypernode_api)
    assert (members(objects["nv-x"]), members(objects["nv-y"])) == (["n3"], ["n2", "n1"])


async def test_an_object_another_writer_keeps_changing_is_contested_not_fought_over(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    writer = make_writer(contest_threshold=3, contest_window=30.0, contest_hold=300.0)
    channel = writer.open("fabric")
    start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("ct-a", "n1"), leaf("ct-b", "n2")]))
    await settled(channel)
    for _ in range(3):
        foreign_delete(hypernode_api, "ct-a")  # another controller of the same source, say
        channel.suspect("ct-a", None, deleted=True)
        await settled(channel)
        await wait_for(lambda: "ct-a" in cluster_hypernodes(hypernode_api) or channel.is_contested("ct-a"))
    assert channel.is_contested("ct-a")
    assert "ct-a" not in cluster_hypernodes(hypernode_api), "the third deletion is not repaired"
    assert channel.stats.repairs == 2
    state = channel.sync["ct-a"]
    assert (state.synced, state.reason) == (False, "Contested")
    # An unchanged re-sent snapshot does not restart the fight either; other objects are still served.
    faults.reset()
    await channel.events.put(Event.snapshot([leaf("ct-a", "n1"), leaf("ct-b", "n2", "n3")]))
    await settled(channel)
    assert [w.name for w in faults.writes()] == ["ct-b"]
    assert "ct-a" not in cluster_hypernodes(hypernode_api)


async def test_repairs_wait_while_a_failed_batch_is_kept(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    policy = RetryPolicy(initial=0.01, maximum=0.02, jitter=0.0, attempts=2, deadline=1.0)
    writer = make_writer(retry=policy, resync_after_failure=0.3)
    channel = writer.open("fabric")
    start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("rw-a", "n1"), leaf("rw-b", "n2")]))
    await settled(channel)
    outage = faults.add(Rule("PATCH", "/hypernodes/rw-a", status=503, reason="ServiceUnavailable", times=10**6))
    await channel.events.put(Event.snapshot([leaf("rw-a", "n1", "n3"), leaf("rw-b", "n2")]))
    await wait_for(lambda: channel.retained != [])
    edited = foreign_edit(hypernode_api, "rw-b", "intruder")
    channel.suspect("rw-b", edited["metadata"]["resourceVersion"], deleted=False)
    await asyncio.sleep(1.0)
    assert channel.stats.repairs == 0, "no repair while our own plan is unfinished"
    assert channel.suspects, "the suspect is kept for later"
    outage.times = 0
    await settled(channel)
    objects = cluster_hypernodes(hypernode_api)
    assert (members(objects["rw-a"]), members(objects["rw-b"])) == (["n1", "n3"], ["n2"])
    assert channel.stats.repairs == 0, "the kept snapshot, once applied, had already put rw-b right"
    assert not channel.suspects


# -- nothing is written that breaks the tree, even part of a set ---------------------------


async def test_a_delete_that_leaves_a_parent_naming_nothing_is_refused(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(claim_wait=0)
    channel = writer.open("fabric")
    assert await writer.process(
        channel, [Event.snapshot([leaf("dm-a", "n1"), leaf("dm-b", "n2"), parent("dm-s", "dm-a", "dm-b")])]
    )
    assert not await writer.process(channel, [Event.delete("dm-b")])
    [reply] = drain(channel)
    assert isinstance(reply.error, TopologyViolation) and "dm-b does not exist" in str(reply.error)
    assert "dm-b" in cluster_hypernodes(hypernode_api)
    assert not await writer.process(channel, [Event.snapshot([leaf("dm-a", "n1"), parent("dm-s", "dm-a", "dm-ghost")])])
    assert any("member exists" in str(p) for r in drain(channel) for p in r.error.problems)


async def test_a_repair_that_alone_would_put_a_node_in_two_leaves_is_not_written(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.snapshot([leaf("rb-a", "n1"), leaf("rb-b", "n2")])])
    # v2 swaps the nodes; the first write of its plan is refused for good, so the cluster stays at v1.
    faults.add(Rule("PATCH", "/hypernodes/rb-a", status=422, reason="Invalid", times=1))
    assert not await writer.process(channel, [Event.snapshot([leaf("rb-a", "n2"), leaf("rb-b", "n1")])])
    drain(channel)
    assert exact(cluster_hypernodes(hypernode_api)["rb-a"]) == ["n1"], "rb-a still holds n1"
    watcher = StateWatcher(hypernode_api, "fabric").start()
    edited = foreign_edit(hypernode_api, "rb-b", "n9")  # someone touches rb-b; its desired state claims n1
    channel.suspect("rb-b", edited["metadata"]["resourceVersion"], deleted=False)
    await writer.repair(channel)
    await asyncio.sleep(0.5)
    watcher.stop()
    assert exact(cluster_hypernodes(hypernode_api)["rb-b"]) == ["n9"], "not put back while rb-a holds n1"
    assert exact(cluster_hypernodes(hypernode_api)["rb-a"]) == ["n1"]
    assert watcher.violations == []
    assert (channel.sync["rb-b"].synced, channel.sync["rb-b"].reason) == (False, "TopologyViolation")
    assert drain(channel) == [], "a repair answers to no provider event"


async def test_a_twin_whose_give_back_fails_is_never_adopted(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    policy = RetryPolicy(initial=0.01, maximum=0.02, jitter=0.0, attempts=2, deadline=2.0)
    writer = make_writer(timeout=5.0, retry=policy)
    channel = writer.open("fabric")
    faults.add(Rule("PATCH", "/hypernodes/tw-x", action="delay", delay=1.0))
    task = asyncio.create_task(writer.process(channel, [Event.create(leaf("tw-x", "n1"))]))
    await wait_for(lambda: any(r.hits for r in faults.rules))
    await asyncio.to_thread(
        client.CustomObjectsApi(hypernode_api).create_cluster_custom_object, GROUP, VERSION, PLURAL,
        leaf("tw-x", "n1").to_dict(),
    )  # fmt: skip
    broken = faults.add(Rule("PATCH", "/hypernodes/tw-x", status=503, reason="ServiceUnavailable", times=100))
    assert not await asyncio.wait_for(task, 30)
    assert "tw-x" in channel.disowned and "tw-x" not in channel.owned
    broken.times = 0
    drain(channel)
    assert not await writer.process(channel, list(channel.retained) or [Event.create(leaf("tw-x", "n1"))])
    assert {type(r.error) for r in drain(channel)} == {OwnershipConflict}
    assert "tw-x" not in channel.owned and not channel.disowned
    assert "labels" not in cluster_hypernodes(hypernode_api)["tw-x"]["metadata"], "our labels were given back"


async def test_no_busy_loop_after_a_held_claim_is_superseded(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    writer = make_writer(claim_wait=0.3)
    channel = writer.open("fabric")
    calls = 0
    real_next = writer._next_batch

    async def counting(ch: ProviderChannel) -> list[Any]:
        nonlocal calls
        calls += 1
        return await real_next(ch)

    writer._next_batch = counting  # type: ignore[method-assign]
    start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("bl-a", "n1"), leaf("bl-b", "n2")]))
    await settled(channel)
    await channel.events.put(Event.update(leaf("bl-b", "n2", "n1")))  # held: n1 is still in bl-a
    await wait_for(lambda: "bl-b" in channel.held)
    await channel.events.put(Event.snapshot([leaf("bl-a", "n1"), leaf("bl-b", "n2", "n3")]))  # supersedes it
    await settled(channel)
    await asyncio.sleep(0.5)  # past the held claim's deadline
    before = calls
    await asyncio.sleep(1.0)
    assert calls - before <= 1, f"{calls - before} turns of the loop in a second with nothing to do"
    assert channel.held == {}


async def test_a_repair_does_not_spin_while_this_replica_may_not_write(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    writer = make_writer(resync_after_failure=0.5)
    channel = writer.open("fabric")
    await writer.process(channel, [Event.snapshot([leaf("ns-a", "n1")])])
    writer.client.gate = lambda: False  # deposed: every request is refused before it is sent
    start(writer, channel, running)
    channel.suspect("ns-a", "1", deleted=True)
    await asyncio.sleep(1.6)
    assert writer.client.requests["list"] <= 1 + 8, "about one attempt per resync period (4 here), not a busy loop"
    assert channel.suspects, "kept for when it may write again"


async def test_a_repair_that_fails_for_a_while_is_retried_until_it_lands(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, running: list[Any]
) -> None:
    policy = RetryPolicy(initial=0.01, maximum=0.02, jitter=0.0, attempts=2, deadline=1.0)
    writer = make_writer(retry=policy, resync_after_failure=0.3)
    channel = writer.open("fabric")
    start(writer, channel, running)
    await channel.events.put(Event.snapshot([leaf("rt-a", "n1"), leaf("rt-b", "n2")]))
    await settled(channel)
    outage = faults.add(Rule("PATCH", "/hypernodes/rt-b", status=503, reason="ServiceUnavailable", times=10**6))
    foreign_delete(hypernode_api, "rt-b")
    channel.suspect("rt-b", None, deleted=True)
    await wait_for(lambda: outage.hits >= 2)
    await asyncio.sleep(0.5)
    outage.times = 0  # no further watch event comes: the repair must retry on its own
    await wait_for(lambda: "rt-b" in cluster_hypernodes(hypernode_api), within=10)
    await settled(channel)
    assert drain(channel) == [], "the provider sent nothing, so it is answered nothing"
    assert channel.stats.foreign_changes == 1, "a retry of our own repair is not another foreign change"
