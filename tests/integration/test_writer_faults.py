"""Every failure class, injected by a proxy in front of the real API server (or by stopping it)."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes import client

from tests.builders import leaf
from tests.faultproxy import FaultProxy, Rule
from tests.integration.conftest import WriterFactory, cluster_hypernodes, drain, members, wait_for
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.provider import Event, OwnershipConflict, RequestRejected, RetriesExhausted
from volcano_topology.retries import RetryPolicy


async def test_429_waits_at_least_retry_after(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    faults.add(Rule("PATCH", "/hypernodes", status=429, reason="TooManyRequests", headers={"Retry-After": "1"}))
    writer = make_writer()
    channel = writer.open("fabric")
    started = time.monotonic()
    assert await writer.process(channel, [Event.create(leaf("f-429", "n1"))])
    assert time.monotonic() - started >= 1.0, "Retry-After is a floor under the backoff"
    assert (faults.count("PATCH", status=429), faults.count("PATCH", status=201)) == (1, 1)
    assert "f-429" in cluster_hypernodes(hypernode_api)


@pytest.mark.parametrize("statuses", [[500], [503, 500, 502]])
async def test_server_errors_are_retried(
    statuses: list[int], make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    for status in statuses:
        faults.add(Rule("PATCH", "/hypernodes", status=status, reason="InternalError"))
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("f-5xx", "n1"))])
    assert faults.count("PATCH") == len(statuses) + 1
    assert drain(channel) == []


async def test_connection_reset_is_retried(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    faults.add(Rule("PATCH", "/hypernodes", action="reset"))
    faults.add(Rule("GET", "/hypernodes", action="reset"))  # the first LIST too
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("f-reset", "n1"))])
    assert faults.count("PATCH", status=0) == 1
    assert faults.count("PATCH", status=201) == 1
    assert "f-reset" in cluster_hypernodes(hypernode_api)


async def test_a_response_slower_than_the_timeout_is_retried_and_not_applied_twice(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer(timeout=1.0)
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("f-slow", "n1"))])
    faults.add(Rule("PATCH", "/hypernodes/f-slow", action="delay", delay=2.5))
    assert await writer.process(channel, [Event.update(leaf("f-slow", "n2"))])
    await asyncio.sleep(2.0)  # let the delayed request reach the server: stale by then, it must be refused
    obj = cluster_hypernodes(hypernode_api)["f-slow"]
    assert members(obj) == ["n2"]
    assert obj["metadata"]["generation"] == 2, "one update, not two"
    assert faults.count("PATCH", status=200) == 1


async def test_409_on_a_stale_read_rereads_and_applies(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("f-409", "n1"))])
    faults.add(Rule("PATCH", "/hypernodes/f-409", status=409, reason="Conflict"))
    assert await writer.process(channel, [Event.update(leaf("f-409", "n2"))])
    assert faults.count("GET", "/hypernodes/f-409") == 1, "re-read the object before trying again"
    assert faults.count("PATCH", status=200) == 1
    assert members(cluster_hypernodes(hypernode_api)["f-409"]) == ["n2"]


@pytest.mark.parametrize(("status", "reason"), [(422, "Invalid"), (400, "BadRequest"), (403, "Forbidden")])
async def test_permanent_errors_are_reported_at_once(
    status: int, reason: str, make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    faults.add(Rule("PATCH", "/hypernodes", status=status, reason=reason, times=100))
    writer = make_writer()
    channel = writer.open("fabric")
    assert not await writer.process(channel, [Event.create(leaf("f-perm", "n1"))])
    [reply] = drain(channel)
    assert isinstance(reply.error, RequestRejected)
    assert (reply.error.status, reply.attempts, reply.error.name) == (status, 1, "f-perm")
    assert reason in str(reply.error)
    assert faults.count("PATCH") == 1, "no retries for a permanent error"
    assert channel.retained == [], "nothing kept for a later retry either"


async def test_a_lost_answer_to_a_create_is_not_applied_twice(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    faults.add(Rule("PATCH", "/hypernodes", action="lost_answer"))
    writer = make_writer()
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("f-lost", "n1"))])
    assert faults.count("PATCH") == 1, "the retry re-read the object and found it already there"
    assert faults.count("GET", "/hypernodes/f-lost") == 1
    assert cluster_hypernodes(hypernode_api)["f-lost"]["metadata"]["generation"] == 1
    assert drain(channel) == []


async def test_exhausted_retries_reply_then_the_batch_is_retried_until_it_lands(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    outage = faults.add(Rule("PATCH", "/hypernodes", status=503, reason="ServiceUnavailable", times=1000))
    policy = RetryPolicy(initial=0.05, maximum=0.1, jitter=0.01, attempts=3, deadline=5.0)
    writer = make_writer(retry=policy, resync_after_failure=0.3)
    channel = writer.open("fabric")
    await channel.events.put(Event.create(leaf("f-outage", "n1")))
    task = asyncio.create_task(writer.run(channel))
    try:
        reply = await asyncio.wait_for(channel.replies.get(), 10)
        assert isinstance(reply.error, RetriesExhausted)
        assert reply.attempts == 3
        assert "503" in str(reply.error)
        outage.times = 0  # the outage ends
        await wait_for(lambda: channel.stats.writes["create"] == 1 and channel.idle.is_set())
    finally:
        task.cancel()
    assert "f-outage" in cluster_hypernodes(hypernode_api)


async def test_api_server_stopped_mid_batch_converges_with_nothing_applied_twice(
    control_plane: LocalControlPlane, make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    count = 150
    writer = make_writer(concurrency=4, retry=RetryPolicy(initial=0.1, maximum=1.0, attempts=100, deadline=60.0))
    channel = writer.open("fabric")
    snapshot = Event.snapshot(leaf(f"f-mid-{i:03d}", f"mid-node-{i}") for i in range(count))
    task = asyncio.create_task(writer.process(channel, [snapshot]))
    await wait_for(lambda: faults.count("PATCH", status=201) >= 20)
    await asyncio.to_thread(control_plane.stop_apiserver)
    stopped_at = faults.count("PATCH", status=201)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(control_plane.start_apiserver)
    hypernode_api.rest_client.pool_manager.clear()  # drop keep-alive connections to the old process
    assert await asyncio.wait_for(task, 90)

    assert stopped_at < count, "the server really went away mid-batch"
    objects = cluster_hypernodes(hypernode_api)
    assert len(objects) == count
    assert all(o["metadata"]["generation"] == 1 for o in objects.values()), "no object was written twice"
    assert faults.count("PATCH", status=200) == 0, "creates only, no updates"
    assert faults.count("PATCH", status=201) <= count
    assert drain(channel) == []


async def test_a_name_taken_between_read_and_write_is_a_conflict_not_an_overwrite(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    faults.add(Rule("PATCH", "/hypernodes/f-race", action="delay", delay=1.0))
    writer = make_writer(timeout=5.0)
    channel = writer.open("fabric")
    task = asyncio.create_task(writer.process(channel, [Event.create(leaf("f-race", "mine"))]))
    await wait_for(lambda: any(r.hits for r in faults.rules))  # our write is held at the proxy
    theirs = leaf("f-race", "theirs").to_dict()
    await asyncio.to_thread(
        client.CustomObjectsApi(hypernode_api).create_cluster_custom_object, GROUP, VERSION, PLURAL, theirs
    )
    assert not await asyncio.wait_for(task, 30)
    [reply] = drain(channel)
    assert isinstance(reply.error, OwnershipConflict)
    obj = cluster_hypernodes(hypernode_api)["f-race"]
    assert members(obj) == ["theirs"]
    assert "labels" not in obj["metadata"]


async def test_a_name_taken_meanwhile_with_identical_values_is_a_conflict_and_left_as_it_was(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    """A non-forced apply does not conflict when the values are the same: the managed fields show it."""
    faults.add(Rule("PATCH", "/hypernodes/f-twin", action="delay", delay=1.0))
    writer = make_writer(timeout=5.0)
    channel = writer.open("fabric")
    task = asyncio.create_task(writer.process(channel, [Event.create(leaf("f-twin", "n1"))]))
    await wait_for(lambda: any(r.hits for r in faults.rules))  # our write is held at the proxy
    twin = leaf("f-twin", "n1").to_dict()  # the same spec, made by hand, without our labels
    await asyncio.to_thread(
        client.CustomObjectsApi(hypernode_api).create_cluster_custom_object, GROUP, VERSION, PLURAL, twin
    )
    assert not await asyncio.wait_for(task, 30)
    [reply] = drain(channel)
    assert isinstance(reply.error, OwnershipConflict)
    assert "created meanwhile" in str(reply.error)
    obj = cluster_hypernodes(hypernode_api)["f-twin"]
    assert "labels" not in obj["metadata"], "our labels were given back: the object is not taken over"
    assert {f["manager"] for f in obj["metadata"]["managedFields"]} == {"OpenAPI-Generator"}
    assert members(obj) == ["n1"]
    assert "f-twin" not in channel.owned
