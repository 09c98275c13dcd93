"""Providers that return the whole topology and let the framework do the rest.

- :class:`ScanningProvider`: implement ``scan()`` (sync or async) returning HyperNodes or a
  :class:`~volcano_topology.sdk.tree.TreeBuilder`. It runs every ``interval`` and when
  :meth:`~ScanningProvider.rescan` is called; a SNAPSHOT is sent only when the result
  changed. When ``scan()`` raises, the error is logged and counted, the last good
  topology stays in the cluster, and the next scan waits with exponential backoff.
- :func:`simple_provider`: the same from a plain function.

A blocking (non-``async``) ``scan()`` runs on a daemon thread of its own (:class:`ScanThreads`),
never on asyncio's default executor, which the rest of the process shares. A thread cannot be
killed: a scan still running when ``scan_timeout`` passes is abandoned (counted as failed),
keeps its thread until it returns, and counts against ``max_scan_threads``; while that many
are still running no new scan starts (each such turn counts as failed). Daemon threads do
not hold up interpreter exit, as the executor's joined worker threads would.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from volcano_topology.api import HyperNode
from volcano_topology.provider import Event, Provider, ProviderContext, Reply
from volcano_topology.sdk.tree import TreeBuilder

Topology = Iterable[HyperNode] | TreeBuilder
T = TypeVar("T")


@dataclass
class ScanStats:
    scans: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    snapshots: int = 0
    last_error: str | None = None
    last_success: float | None = None


class ScanThreadsBusy(RuntimeError):
    """No new blocking scan was started: ``limit`` earlier ones are still running."""


class ScanThreads:
    """Runs blocking calls on daemon threads, at most ``limit`` alive at once.

    ``alive`` counts threads still running, including calls whose caller stopped waiting
    (cancelled, e.g. by a timeout); ``hung`` counts those abandoned ones until they return.
    """

    def __init__(self, limit: int, name: str) -> None:
        if limit < 1:
            raise ValueError("at least one scan thread is needed")
        self.limit, self.name = limit, name
        self._lock = threading.Lock()
        self._alive = 0
        self._hung = 0
        self._started = 0

    @property
    def alive(self) -> int:
        return self._alive

    @property
    def hung(self) -> int:
        return self._hung

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a new daemon thread; raises :class:`ScanThreadsBusy`, starting nothing, at the limit.

        Cancelling the caller does not stop the thread: the call counts as abandoned until it returns.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        state = {"finished": False, "abandoned": False}  # guarded by self._lock
        with self._lock:
            if self._alive >= self.limit:
                raise ScanThreadsBusy(f"{self._alive} earlier scan(s) still running (at most {self.limit})")
            self._alive += 1
            self._started += 1
            number = self._started
        context = contextvars.copy_context()

        def settle(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def target() -> None:
            outcome: tuple[bool, Any]
            try:
                outcome = (True, context.run(fn))
            except BaseException as exc:
                outcome = (False, exc)
            finally:
                with self._lock:
                    state["finished"] = True
                    self._alive -= 1
                    if state["abandoned"]:
                        self._hung -= 1
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, *outcome)

        threading.Thread(target=target, name=f"{self.name}-{number}", daemon=True).start()
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                if not state["finished"]:
                    state["abandoned"] = True
                    self._hung += 1
            raise


def as_hypernodes(topology: Topology) -> tuple[HyperNode, ...]:
    """A scan's result as HyperNodes in name order (so equal topologies compare equal)."""
    items = topology.build() if isinstance(topology, TreeBuilder) else list(topology)
    for item in items:
        if not isinstance(item, HyperNode):
            raise TypeError(f"scan() must return HyperNodes or a TreeBuilder, got {type(item).__name__}")
    return tuple(sorted(items, key=lambda h: h.metadata.name or ""))


def fingerprint(hypernodes: Iterable[HyperNode]) -> str:
    digest = hashlib.sha256()
    for hypernode in hypernodes:
        digest.update(hypernode.model_dump_json(by_alias=True, exclude_none=True).encode())
    return digest.hexdigest()


def _converted(found: Topology) -> tuple[tuple[HyperNode, ...], str]:
    hypernodes = as_hypernodes(found)
    return hypernodes, fingerprint(hypernodes)


class ScanningProvider(Provider):
    """Subclass and implement :meth:`scan`. ``ctx.interval`` (configuration) overrides ``interval``."""

    interval: ClassVar[float] = 60.0
    max_backoff: ClassVar[float] = 300.0
    initial_backoff: ClassVar[float] = 1.0
    # A scan that takes longer counts as failed (a hung vendor API must not freeze the provider).
    # A blocking scan() runs in a thread, which Python cannot stop: it is abandoned, not killed.
    scan_timeout: ClassVar[float] = 300.0
    # Blocking scans in flight at once, hung ones included: bounds the threads a stuck vendor API can pin.
    max_scan_threads: ClassVar[int] = 2

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.stats = ScanStats()
        self.threads = ScanThreads(self.max_scan_threads, f"scan-{type(self).__name__}")
        self._rescan = asyncio.Event()
        self._sent: str | None = None
        self._converter: ThreadPoolExecutor | None = None

    def scan(self) -> Topology | Awaitable[Topology]:
        raise NotImplementedError("a ScanningProvider implements scan()")

    def rescan(self) -> None:
        """Scan now instead of at the next interval (e.g. from a vendor notification)."""
        self._rescan.set()

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        interval = ctx.interval or self.interval
        # A fresh Event for this event loop: one used on an earlier loop (a provider started again
        # under another asyncio.run) is bound to that loop. A rescan() asked for meanwhile is kept.
        pending, self._rescan = self._rescan.is_set(), asyncio.Event()
        if pending:
            self._rescan.set()
        reader = asyncio.create_task(self._read_replies(replies, ctx))
        # A thread of its own, not asyncio's default executor: other work there cannot delay a scan.
        self._converter = ThreadPoolExecutor(1, thread_name_prefix=f"convert-{type(self).__name__}")
        try:
            while not ctx.stopping.is_set():
                delay = interval if await self._scan_once(events, ctx) else self._backoff(interval)
                await self._wait(ctx, delay)
        finally:
            self._converter.shutdown(wait=False)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _scan_once(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> bool:
        self.stats.scans += 1
        try:
            found = await asyncio.wait_for(self._call_scan(), self.scan_timeout)
            # Building and checking thousands of HyperNodes takes seconds at 65k nodes: never on the event
            # loop, where it would hold up the writer, the status writer and the leader's lease renewals.
            loop = asyncio.get_running_loop()
            hypernodes, current = await loop.run_in_executor(self._converter, _converted, found)
        except TimeoutError:
            hung = self.threads.hung
            return self._failed(ctx, f"scan() did not return within {self.scan_timeout:g}s"
                                     + (f" ({hung} scan thread(s) still running)" if hung else ""))  # fmt: skip
        except ScanThreadsBusy as exc:
            return self._failed(ctx, f"scan() not started: {exc}")
        except Exception as exc:
            return self._failed(ctx, f"{type(exc).__name__}: {exc}")
        self.stats.consecutive_failures = 0
        self.stats.last_success = time.time()
        if current != self._sent:
            await events.put(Event.snapshot(hypernodes))
            self._sent = current
            self.stats.snapshots += 1
        return True

    def _failed(self, ctx: ProviderContext, error: str) -> bool:
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = error
        ctx.logger.warning("scan failed (%d in a row), keeping the last good topology: %s",
                           self.stats.consecutive_failures, error)  # fmt: skip
        return False

    async def _call_scan(self) -> Topology:
        if inspect.iscoroutinefunction(self.scan):
            result: Topology = await self.scan()
            return result
        # A blocking vendor call must not stall the event loop (and with it every other provider).
        outcome = await self.threads.run(self.scan)
        if inspect.isawaitable(outcome):
            return await outcome
        return outcome

    def _backoff(self, interval: float) -> float:
        step = self.initial_backoff * 2.0 ** (self.stats.consecutive_failures - 1)
        return min(step, self.max_backoff, interval)

    async def _wait(self, ctx: ProviderContext, delay: float) -> None:
        stop = asyncio.create_task(ctx.stopping.wait())
        rescan = asyncio.create_task(self._rescan.wait())
        try:
            await asyncio.wait({stop, rescan}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop, rescan):
                task.cancel()
        self._rescan.clear()

    async def _read_replies(self, replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        while True:
            reply = await replies.get()
            ctx.logger.warning("not applied: %s", reply.error)
            # Send the whole topology again next scan: a conflict may have been resolved meanwhile.
            self._sent = None


def simple_provider(
    name: str, fn: Callable[[], Topology | Awaitable[Topology]], interval: float = 60.0
) -> type[ScanningProvider]:
    """A provider class from a function returning the whole topology; register the class as an entry point."""

    class FunctionProvider(ScanningProvider):
        def scan(self) -> Topology | Awaitable[Topology]:
            return fn()

    FunctionProvider.interval = interval
    FunctionProvider.__name__ = FunctionProvider.__qualname__ = name
    return FunctionProvider
