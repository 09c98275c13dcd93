"""Full control with a lifecycle that never leaks background work.

Implement ``refresh`` (called on every start and restart: list everything and emit the
complete state, usually one SNAPSHOT), optionally ``watch`` (follow changes until
stopped) and ``destroy`` (release connections on stop). Start background work with
:meth:`LifecycleProvider.spawn`: every task spawned is cancelled and awaited when the
provider stops or fails, so nothing outlives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from volcano_topology.provider import Event, Provider, ProviderContext, Reply


class LifecycleProvider(Provider):
    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def refresh(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        """Emit the complete current state; runs on every (re)start."""

    async def watch(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        """Follow changes until stopped. The default just waits for the stop signal."""
        await ctx.stopping.wait()

    async def destroy(self) -> None:
        """Release what ``refresh``/``watch`` acquired; runs once per stop or failure."""

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        try:
            await self.refresh(events, ctx)
            await self.watch(events, replies, ctx)
        finally:
            await self._cancel_tasks()

    async def stop(self) -> None:
        await self._cancel_tasks()
        await self.destroy()

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
