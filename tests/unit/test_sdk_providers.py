"""Scanning, function and lifecycle providers, without a cluster: what they put on the queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from tests.builders import leaf
from volcano_topology.api import HyperNode
from volcano_topology.provider import Event, EventType, ProviderContext, Reply
from volcano_topology.runner import NoSecrets, StaticCluster
from volcano_topology.sdk import LifecycleProvider, ScanningProvider, TreeBuilder, simple_provider


def context(interval: float | None = 0.02) -> ProviderContext:
    return ProviderContext("t", logging.getLogger("t"), StaticCluster(), NoSecrets(), interval=interval)  # type: ignore[arg-type]


async def run_for(provider: ScanningProvider | LifecycleProvider, seconds: float, ctx: ProviderContext) -> list[Event]:
    events: asyncio.Queue[Event] = asyncio.Queue()
    replies: asyncio.Queue[Reply] = asyncio.Queue()
    task = asyncio.create_task(provider.start(events, replies, ctx))
    await asyncio.sleep(seconds)
    ctx.stopping.set()
    await asyncio.wait_for(task, 2)
    await provider.stop()
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


class Flaky(ScanningProvider):
    """Scan results scripted per call: a list of HyperNodes, or an exception to raise."""

    def __init__(self, script: list[object]) -> None:
        super().__init__()
        self.script = script
        self.calls = 0

    def scan(self) -> list:  # type: ignore[type-arg]
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        return step  # type: ignore[return-value]


async def test_snapshots_are_sent_only_when_the_topology_changes() -> None:
    a, b = [leaf("l1", "n1")], [leaf("l1", "n2")]
    provider = Flaky([a, a, a, b, b])
    events = await run_for(provider, 0.25, context())
    assert [e.type for e in events] == [EventType.SNAPSHOT, EventType.SNAPSHOT]
    assert [e.hypernodes for e in events] == [tuple(a), tuple(b)]
    assert provider.stats.scans >= 5


async def test_a_failing_scan_keeps_the_last_good_topology_and_backs_off() -> None:
    good = [leaf("l1", "n1")]
    provider = Flaky([good, RuntimeError("vendor API down"), RuntimeError("still down"), good])
    provider.initial_backoff = 0.01
    events = await run_for(provider, 0.3, context())
    assert [e.hypernodes for e in events] == [tuple(good)], "failures send nothing; the same result is not re-sent"
    assert provider.stats.failures == 2
    assert provider.stats.last_error == "RuntimeError: still down"
    assert provider.stats.consecutive_failures == 0


def test_backoff_grows_and_is_capped() -> None:
    provider = Flaky([[]])
    provider.initial_backoff, provider.max_backoff = 1.0, 5.0
    delays = []
    for failures in range(1, 6):
        provider.stats.consecutive_failures = failures
        delays.append(provider._backoff(interval=60))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_rescan_runs_a_scan_now() -> None:
    provider = Flaky([[leaf("l1", "n1")]])
    ctx = context(interval=3600)
    events: asyncio.Queue[Event] = asyncio.Queue()
    task = asyncio.create_task(provider.start(events, asyncio.Queue(), ctx))
    await asyncio.sleep(0.05)
    assert provider.calls == 1
    provider.rescan()
    await asyncio.sleep(0.05)
    assert provider.calls == 2
    ctx.stopping.set()
    await asyncio.wait_for(task, 1)


async def test_a_reply_makes_the_next_scan_send_again() -> None:
    provider = Flaky([[leaf("l1", "n1")]])
    ctx = context(interval=0.02)
    events: asyncio.Queue[Event] = asyncio.Queue()
    replies: asyncio.Queue[Reply] = asyncio.Queue()
    task = asyncio.create_task(provider.start(events, replies, ctx))
    await asyncio.sleep(0.08)
    first = events.qsize()
    await replies.put(Reply(events.get_nowait(), RuntimeError("conflict"), 1))  # type: ignore[arg-type]
    await asyncio.sleep(0.08)
    ctx.stopping.set()
    await asyncio.wait_for(task, 1)
    assert first == 1
    assert events.qsize() == 1, "sent once more after the reply"


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_simple_provider_from_a_function(asynchronous: bool) -> None:
    def racks() -> TreeBuilder:
        return TreeBuilder().switch("spine").switch("rack-1", parents=["spine"]).attach("rack-1", "n1")

    async def racks_async() -> TreeBuilder:
        return racks()

    fn: Callable[[], TreeBuilder | Awaitable[TreeBuilder]] = racks_async if asynchronous else racks
    cls = simple_provider("racks", fn, interval=0.02)
    assert cls.__name__ == "racks"
    events = await run_for(cls(), 0.1, context(interval=None))
    assert len(events) == 1
    assert [h.name for h in events[0].hypernodes] == ["rack-1", "spine"]


async def test_scan_returning_garbage_counts_as_a_failure() -> None:
    provider = Flaky([["not a hypernode"]])
    events = await run_for(provider, 0.05, context())
    assert events == []
    assert "scan() must return HyperNodes or a TreeBuilder" in str(provider.stats.last_error)


class Watcher(LifecycleProvider):
    def __init__(self) -> None:
        super().__init__()
        self.refreshed = 0
        self.destroyed = 0
        self.spawned: list[asyncio.Task[None]] = []

    async def refresh(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        self.refreshed += 1
        await events.put(Event.snapshot([leaf("l1", "n1")]))

    async def watch(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        async def poll_forever() -> None:
            while True:  # noqa: ASYNC110 - stands in for a vendor's polling loop
                await asyncio.sleep(0.01)

        self.spawned = [self.spawn(poll_forever(), name=f"poll-{i}") for i in range(3)]
        await ctx.stopping.wait()

    async def destroy(self) -> None:
        self.destroyed += 1


async def test_lifecycle_refreshes_on_start_and_leaves_no_task_behind() -> None:
    provider = Watcher()
    before = asyncio.all_tasks()
    events = await run_for(provider, 0.05, context())
    assert [e.type for e in events] == [EventType.SNAPSHOT]
    assert (provider.refreshed, provider.destroyed) == (1, 1)
    assert provider.tasks == frozenset()
    assert all(task.done() for task in provider.spawned)
    assert asyncio.all_tasks() - before == set(), "no task outlives the provider"


async def test_lifecycle_cancelled_mid_watch_still_cleans_up() -> None:
    provider = Watcher()
    ctx = context()
    task = asyncio.create_task(provider.start(asyncio.Queue(), asyncio.Queue(), ctx))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await provider.stop()
    assert all(t.done() for t in provider.spawned)
    assert provider.destroyed == 1


async def test_a_hung_scan_times_out_and_counts_as_a_failure() -> None:
    class Hanging(ScanningProvider):
        scan_timeout = 0.05
        initial_backoff = 0.01

        async def scan(self) -> list:  # type: ignore[type-arg]
            await asyncio.Event().wait()  # a vendor API that never answers
            return []

    provider = Hanging()
    events = await run_for(provider, 0.3, context())
    assert events == []
    assert provider.stats.failures >= 2
    assert provider.stats.last_error == "scan() did not return within 0.05s"


def test_the_cluster_view_of_nodes_is_live() -> None:
    """A provider reading ctx.cluster.nodes() on each scan sees Nodes the operator learned of after it started."""
    from volcano_topology.runner import StaticCluster

    index: dict[str, dict[str, str]] = {}
    view = StaticCluster(lambda: index)
    assert view.nodes() == {}
    index["gpu-0"] = {"rack": "a1"}
    assert view.nodes() == {"gpu-0": {"rack": "a1"}}
    assert StaticCluster({"n": {}}).nodes() == {"n": {}}, "a fixed mapping still works"


def test_a_scanning_provider_can_be_started_again_under_another_event_loop() -> None:
    class Once(ScanningProvider):
        interval = 60.0

        def scan(self) -> list[HyperNode]:
            return []

    provider = Once()

    async def one_run() -> int:
        events: asyncio.Queue[Event] = asyncio.Queue()
        ctx = ProviderContext("once", logging.getLogger("once"), StaticCluster(), NoSecrets())
        task = asyncio.create_task(provider.start(events, asyncio.Queue(), ctx))
        await asyncio.wait_for(events.get(), 5)
        provider.rescan()
        await asyncio.sleep(0.1)
        ctx.stopping.set()
        provider.rescan()
        await asyncio.wait_for(task, 5)
        return provider.stats.scans

    first = asyncio.run(one_run())
    provider._sent = None
    assert asyncio.run(one_run()) == first + 2, "the second loop's scans ran, and the rescan woke it"
