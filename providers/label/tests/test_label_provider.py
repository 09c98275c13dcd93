"""The provider loop against a fake Node view: waits for sync, coalesces bursts, sends only changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from volcano_topology_label.provider import LabelProvider
from volcano_topology_label.settings import LabelSettings

from volcano_topology.api import HyperNode
from volcano_topology.provider import ApplyError, Event, EventType, ProviderContext, Reply
from volcano_topology.runner import NoSecrets

TYPES = {"gpu": [{"nodeLabel": "spine"}, {"nodeLabel": "leaf"}, {"nodeLabel": "kubernetes.io/hostname"}]}


class FakeNodes:
    """A ClusterView like the operator's: a generation that bumps on every change, 0 until synced."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}
        self.generation = 0
        self.synced = False
        self.synced_asked = 0
        self._changed = asyncio.Condition()

    def nodes(self) -> Mapping[str, Mapping[str, str]]:
        return self.labels

    def owned_hypernodes(self) -> Mapping[str, HyperNode]:
        return {}

    def nodes_synced(self) -> bool:
        self.synced_asked += 1
        return self.synced

    async def nodes_changed(self, seen: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.synced and self.generation != seen)
            return self.generation

    async def sync(self, nodes: Mapping[str, Mapping[str, str]]) -> None:
        self.labels = {name: dict(labels) for name, labels in nodes.items()}
        self.synced = True
        await self._bump()

    async def relabel(self, name: str, labels: Mapping[str, str]) -> None:
        self.labels[name] = dict(labels)
        await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()


@dataclass
class Running:
    provider: LabelProvider
    view: FakeNodes
    ctx: ProviderContext
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    replies: asyncio.Queue[Reply] = field(default_factory=asyncio.Queue)

    async def snapshot(self) -> Event:
        event = await asyncio.wait_for(self.events.get(), 20)
        assert event.type is EventType.SNAPSHOT
        return event


@contextlib.asynccontextmanager
async def running(interval: float = 3600.0, **config: Any) -> AsyncIterator[Running]:
    provider = LabelProvider(LabelSettings.model_validate({"networkTopologyTypes": TYPES, **config}))
    view = FakeNodes()
    ctx = ProviderContext("label", logging.getLogger("label-test"), view, NoSecrets(), interval=interval)
    run = Running(provider, view, ctx)
    task = asyncio.create_task(provider.start(run.events, run.replies, ctx))
    try:
        yield run
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 5)  # start() returns on its own once stopping is set


async def until(condition: Callable[[], bool]) -> None:
    """Poll (the fake has no hook for these conditions); the test's own timeout bounds it."""
    while True:
        if condition():
            return
        await asyncio.sleep(0.01)


def cluster(count: int, leaf_size: int = 100, spine_size: int = 500, tag: str = "l") -> dict[str, dict[str, str]]:
    return {f"n{i:04}": {"spine": f"s{i // spine_size}", "leaf": f"{tag}{i // leaf_size}"} for i in range(count)}


def node_members(event: Event) -> dict[str, list[str]]:
    return {
        h.name: [m.selector.exact_match.name for m in h.members if m.selector and m.selector.exact_match]
        for h in event.hypernodes
        if h.spec and h.spec.tier == 1
    }


async def test_a_thousand_label_changes_give_one_new_snapshot() -> None:
    async with running(debounce=0.5, maxDelay=60) as run:
        await run.view.sync(cluster(1000))
        first = await run.snapshot()
        assert len(node_members(first)) == 10
        for name, labels in cluster(1000, leaf_size=50, tag="m").items():  # every Node relabelled, one by one
            await run.view.relabel(name, labels)
            await asyncio.sleep(0)  # let the watch deliver each change on its own, as the real one does
        second = await run.snapshot()
        assert sorted(node_members(second)) == sorted(f"gpu-m{i}" for i in range(20))
        assert node_members(second)["gpu-m7"] == [f"n{i:04}" for i in range(350, 400)]
        # The build that sent it read the final generation: nothing is left to send.
        assert run.provider.seen == run.view.generation == 1001
        assert run.events.empty() and run.provider.snapshots == 2


async def test_nothing_is_sent_before_the_node_view_is_synced() -> None:
    async with running(interval=0.01) as run:
        run.view.labels = cluster(10)  # a partial view, as while the first LIST is still coming in
        await until(lambda: run.view.synced_asked >= 5)  # the interval passed five times, each time unsynced
        assert run.events.empty() and run.provider.builds == 0
        await run.view.sync(cluster(200))
        assert len(node_members(await run.snapshot())) == 2


async def test_a_rebuild_that_changes_nothing_sends_nothing() -> None:
    async with running(debounce=0.05) as run:
        await run.view.sync(cluster(10))
        await run.snapshot()
        await run.view.relabel("n0001", {**cluster(10)["n0001"], "unrelated": "x"})
        await until(lambda: run.provider.builds >= 2)
        assert run.events.empty() and run.provider.snapshots == 1


async def test_changes_that_never_stop_are_sent_after_max_delay() -> None:
    async with running(debounce=0.2, maxDelay=0.3) as run:
        await run.view.sync(cluster(10))
        await run.snapshot()
        step = 0
        while run.events.empty():  # a Node changes every 10 ms, so the view is never quiet for `debounce`
            step += 1
            await run.view.relabel("n0000", {"spine": "s0", "leaf": f"moving{step}"})
            await asyncio.sleep(0.01)
        assert run.provider.snapshots == 2


async def test_after_a_reply_the_next_rebuild_sends_the_topology_again() -> None:
    async with running(debounce=0.05) as run:
        await run.view.sync(cluster(10))
        first = await run.snapshot()
        await run.replies.put(Reply(first, ApplyError("refused"), 1))
        await until(lambda: run.provider._sent is None)
        await run.view.relabel("n0001", {**cluster(10)["n0001"], "unrelated": "x"})  # same topology
        again = await run.snapshot()
        assert again.hypernodes == first.hypernodes


async def test_gauges_count_nodes_missing_a_level() -> None:
    async with running() as run:
        assert run.provider.gauges() == {}
        await run.view.sync({**cluster(4), "half": {"spine": "s0"}, "plain": {}})
        await run.snapshot()
        gauges = run.provider.gauges()
        assert gauges["nodes_missing_level"] == 1
        assert gauges["nodes_skipped"] == 1
        assert gauges["nodes_outside_topology"] == 1
        assert gauges["nodes_placed"] == 4


def test_the_provider_asks_for_the_node_watch_and_needs_a_config() -> None:
    assert LabelProvider.needs_nodes is True
    with pytest.raises(ValueError, match="networkTopologyTypes"):
        LabelProvider(None)


async def test_it_rebuilds_every_interval_and_sends_an_empty_topology_too() -> None:
    async with running(interval=0.05) as run:
        await run.view.sync({"cpu-0": {}})
        assert (await run.snapshot()).hypernodes == ()  # the operator's deletion guard decides what that means
        await until(lambda: run.provider.builds >= 3)  # no Node changed: the interval drove these
        assert run.events.empty()


async def test_a_restart_sends_the_whole_topology_again_at_once() -> None:
    async with running() as run:
        await run.view.sync(cluster(10))
        first = await run.snapshot()
    ctx = ProviderContext("label", logging.getLogger("label-test"), run.view, NoSecrets(), interval=3600.0)
    task = asyncio.create_task(run.provider.start(run.events, run.replies, ctx))  # the same instance, as the runner
    try:
        assert (await run.snapshot()).hypernodes == first.hypernodes
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 5)


async def test_the_build_and_its_fingerprint_run_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from volcano_topology_label import provider as module

    threads: list[str] = []
    real_analyse, real_fingerprint = module.analyse, module.fingerprint

    def analyse(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_analyse(*args)

    def fingerprint(*args: Any) -> str:
        threads.append(threading.current_thread().name)
        return real_fingerprint(*args)

    monkeypatch.setattr(module, "analyse", analyse)
    monkeypatch.setattr(module, "fingerprint", fingerprint)
    async with running() as run:
        await run.view.sync(cluster(10))
        await run.snapshot()
    loop_thread = threading.current_thread().name
    assert len(threads) == 2 and loop_thread not in threads  # 16k Nodes: a second of JSON, not on the loop
