"""The provider loop: watch the operator's Node view, coalesce bursts of changes, send a snapshot when it changed.

Nodes come from ``ctx.cluster`` (the operator's watch-fed Node view, started because this
provider sets ``needs_nodes``); the provider never lists Nodes itself. It waits for the view to
be synced before it builds anything, because an empty view at start would be a snapshot
that deletes every HyperNode it owns. After the first snapshot, each burst of Node changes
is coalesced (``debounce`` of quiet, at most ``maxDelay`` after the burst began) into one
rebuild; a rebuild whose result equals what was last sent sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, TypeVar

from volcano_topology.provider import Event, Provider, ProviderContext, Reply
from volcano_topology.sdk.scanning import ScanThreads, fingerprint
from volcano_topology_label.build import Built, analyse
from volcano_topology_label.settings import LabelSettings

T = TypeVar("T")


class LabelProvider(Provider):
    settings_model = LabelSettings
    settings: LabelSettings
    needs_nodes: ClassVar[bool] = True  # the operator runs its Node watch for this provider
    # Rebuild at least this often even without Node changes (``interval`` of the entry overrides it).
    interval: ClassVar[float] = 300.0

    def __init__(self, settings: LabelSettings | None = None) -> None:
        if settings is None:
            raise ValueError("the label provider needs a config block with networkTopologyTypes")
        super().__init__(settings)
        self.last: Built | None = None  # the latest build
        self.snapshots = 0  # snapshots sent
        self.builds = 0  # rebuilds done (a rebuild that changed nothing sends no snapshot)
        self.seen = 0  # the Node view generation the latest build read
        self._sent: str | None = None
        # The build is pure CPU (about 0.6 s for 16k Nodes): off the event loop the operator shares.
        self._threads = ScanThreads(2, "label-build")  # 2: one may still finish after a cancelled run

    def gauges(self) -> Mapping[str, float]:
        """``nodes_missing_level`` and friends, as of the latest build (exported by the operator as metrics)."""
        return self.last.gauges() if self.last is not None else {}

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        # A (re)start sends the whole topology at once: after a failure, what was sent may not have been applied.
        self.seen, self._sent = 0, None
        reader = asyncio.create_task(self._read_replies(replies, ctx))
        interval = ctx.interval or self.interval
        try:
            while not ctx.stopping.is_set():
                generation = await self._until(ctx, ctx.cluster.nodes_changed(self.seen), interval)
                if ctx.stopping.is_set():
                    return
                if generation is not None:
                    # The first list is complete when the view is synced: build at once. Later changes
                    # come in bursts (a relabelling script, a rack added): wait for the burst to end.
                    generation = generation if self.seen == 0 else await self._settle(ctx, generation)
                    if ctx.stopping.is_set():
                        return
                    self.seen = generation
                elif not ctx.cluster.nodes_synced():
                    continue  # the interval passed before the first sync: never build from a partial view
                await self._publish(events, ctx)
        finally:
            ctx.logger.info("stopped (%d snapshot(s) sent)", self.snapshots)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _settle(self, ctx: ProviderContext, generation: int) -> int:
        """The generation once no Node changed for ``debounce`` seconds, or ``maxDelay`` after the burst began."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_delay
        while (remaining := deadline - loop.time()) > 0:
            newer = await self._until(
                ctx, ctx.cluster.nodes_changed(generation), min(self.settings.debounce, remaining)
            )
            if newer is None:
                break
            generation = newer
        return generation

    async def _publish(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        # A copy: the view is the operator's live index, and the build must see one state of it.
        nodes = {name: dict(labels) for name, labels in ctx.cluster.nodes().items()}
        # The fingerprint too: serialising every HyperNode of a large cluster is CPU the loop cannot spare.
        built, current = await self._threads.run(lambda: _analysed(nodes, self.settings))
        self.builds += 1
        self.last = built
        if current == self._sent:
            return
        if built.missing_level:
            ctx.logger.warning(
                "%d node(s) lack a tier label of their type (missingLabels: %s), e.g. %s",
                len(built.missing_level), self.settings.missing_labels, ", ".join(sorted(built.missing_level)[:3]),
            )  # fmt: skip
        await events.put(Event.snapshot(built.hypernodes))
        self._sent = current
        self.snapshots += 1
        ctx.logger.info("sent a snapshot of %d HyperNodes for %d placed node(s)", len(built.hypernodes),
                        len(built.placed))  # fmt: skip

    async def _until(self, ctx: ProviderContext, awaitable: Awaitable[T], within: float) -> T | None:
        """``awaitable``'s result, or None when ``within`` seconds passed first or the provider is stopping."""
        waited: asyncio.Task[Any] = asyncio.ensure_future(awaitable)
        stopping = asyncio.create_task(ctx.stopping.wait())
        try:
            await asyncio.wait({waited, stopping}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waited, stopping):
                task.cancel()
        if waited.done() and not waited.cancelled():
            result: T = waited.result()
            return result
        return None

    async def _read_replies(self, replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        while True:
            reply = await replies.get()
            ctx.logger.warning("not applied: %s", reply.error)
            # Send the whole topology again at the next rebuild (a Node change or the interval), not at
            # once: a conflict that stays would otherwise be re-sent and refused in a tight loop.
            self._sent = None


def _analysed(nodes: Mapping[str, Mapping[str, str]], settings: LabelSettings) -> tuple[Built, str]:
    """The build and its fingerprint: both pure CPU, so both run on the build thread."""
    built = analyse(nodes, settings)
    return built, fingerprint(built.hypernodes)
