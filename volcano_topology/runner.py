"""One provider wired to the writer: its context, a supervised task, and a clean stop.

A provider whose ``start`` raises is stopped, logged, counted and started again after an
exponential backoff; the writer and the other providers are not affected. Stopping sets
``ctx.stopping``, gives the provider a grace period to return, cancels it otherwise (and
abandons it, logged, if it ignores the cancellation for another grace period), calls
``stop()``, then lets the writer drain what was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard, cast

from volcano_topology.api import HyperNode
from volcano_topology.provider import Provider, ProviderContext
from volcano_topology.writer import ProviderChannel, Writer

log = logging.getLogger(__name__)


NodeLabels = Mapping[str, Mapping[str, str]]


class LiveNodes(Protocol):
    """A Node view that changes (the operator's :class:`~volcano_topology.nodewatch.NodeCache`)."""

    def labels(self) -> NodeLabels: ...

    def synced(self) -> bool: ...

    async def changed(self, seen: int) -> int: ...


NodeSource = NodeLabels | Callable[[], NodeLabels] | LiveNodes


@dataclass
class StaticCluster:
    """A ClusterView over Nodes and the channel's owned HyperNodes.

    Nodes come from a fixed mapping or a callable (synced at once, generation 1 for ever), or
    from a :class:`LiveNodes` view, whose generation changes as Nodes do.
    """

    node_labels: NodeSource = field(default_factory=dict)
    channel: ProviderChannel | None = None

    def nodes(self) -> NodeLabels:
        source = self.node_labels
        if _is_live(source):
            return source.labels()
        # A callable is asked each time: the operator's Node view changes after the provider started.
        fixed = cast(NodeLabels | Callable[[], NodeLabels], source)
        return fixed() if callable(fixed) else fixed

    def nodes_synced(self) -> bool:
        source = self.node_labels
        return source.synced() if _is_live(source) else True

    async def nodes_changed(self, seen: int) -> int:
        source = self.node_labels
        if _is_live(source):
            return await source.changed(seen)
        if seen != 1:
            return 1
        await asyncio.Event().wait()  # a fixed view never changes again
        raise AssertionError("unreachable")

    def owned_hypernodes(self) -> Mapping[str, HyperNode]:
        return dict(self.channel.owned) if self.channel is not None else {}


def _is_live(source: NodeSource) -> TypeGuard[LiveNodes]:
    return all(hasattr(source, attr) for attr in ("labels", "synced", "changed")) and not isinstance(source, Mapping)


class NoSecrets:
    async def read(self, name: str, key: str, namespace: str | None = None) -> bytes:
        raise KeyError(f"no secret store configured: cannot read {namespace or ''}/{name}[{key}]")


class ProviderRun:
    def __init__(
        self,
        name: str,
        provider: Provider,
        writer: Writer,
        *,
        interval: float | None = None,
        nodes: NodeSource | None = None,
        secrets: object | None = None,
        credentials: Mapping[str, bytes] | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.name = name
        self.provider = provider
        self.writer = writer
        transform = provider.post_process if provider.has_post_process() else None
        self.channel = writer.open(name, transform=transform)
        cluster = StaticCluster(nodes or {}, self.channel)
        self.ctx = ProviderContext(
            name, logging.getLogger(f"volcano_topology.provider.{name}"), cluster,
            secrets or NoSecrets(), interval=interval, credentials=dict(credentials or {}),  # type: ignore[arg-type]
        )  # fmt: skip
        self.restarts = 0
        self.last_error: str | None = None
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self._supervisor: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self.writer.run(self.channel), name=f"writer:{self.name}")
        self._supervisor = asyncio.create_task(self._supervise(), name=f"provider:{self.name}")

    async def _supervise(self) -> None:
        failures = 0
        while not self.ctx.stopping.is_set():
            try:
                await self.provider.start(self.channel.events, self.channel.replies, self.ctx)
                return  # a provider may finish on its own (one-shot discovery)
            except Exception as exc:
                failures += 1
                self.restarts += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(self.initial_backoff * 2.0 ** (failures - 1), self.max_backoff)
                log.error("provider %s failed (%s); restarting in %.1fs", self.name, self.last_error, delay,
                          exc_info=exc)  # fmt: skip
                with contextlib.suppress(Exception):
                    await self.provider.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.stopping.wait(), delay)

    async def stop(self, grace: float = 5.0, drain: float = 10.0) -> None:
        self.ctx.stopping.set()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), grace)
            except TimeoutError:
                self._supervisor.cancel()
                # A provider that swallows the cancellation must not hold up the stop (and with it the
                # other providers' drain, the lease's release and the exit): it is abandoned, not awaited.
                await asyncio.wait({self._supervisor}, timeout=grace)
                if not self._supervisor.done():
                    log.error("provider %s did not stop within %.1fs of being cancelled (it ignores cancellation); "
                              "abandoned", self.name, grace)  # fmt: skip
        try:
            await self.provider.stop()
        except Exception as exc:
            log.error("provider %s: stop() raised %r", self.name, exc)
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), drain)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _drained(self) -> None:
        # ``idle`` alone may still be set from before the last events were queued: check both.
        while not (self.channel.events.empty() and self.channel.idle.is_set()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
