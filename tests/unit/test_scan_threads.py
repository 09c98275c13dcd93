"""Blocking scans on bounded daemon threads of their own, never on asyncio's default executor."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.builders import leaf
from volcano_topology.provider import Event, EventType, ProviderContext, Reply
from volcano_topology.runner import NoSecrets, StaticCluster
from volcano_topology.sdk import ScanningProvider


def context(interval: float = 0.02) -> ProviderContext:
    return ProviderContext("t", logging.getLogger("t"), StaticCluster(), NoSecrets(), interval=interval)  # type: ignore[arg-type]


async def run_for(provider: ScanningProvider, seconds: float, ctx: ProviderContext) -> list[Event]:
    events: asyncio.Queue[Event] = asyncio.Queue()
    replies: asyncio.Queue[Reply] = asyncio.Queue()
    task = asyncio.create_task(provider.start(events, replies, ctx))
    await asyncio.sleep(seconds)
    ctx.stopping.set()
    await asyncio.wait_for(task, 2)
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


async def test_a_blocking_scan_runs_while_the_default_executor_is_full() -> None:
    release = threading.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    blocker = loop.run_in_executor(None, release.wait)

    class Blocking(ScanningProvider):
        scan_timeout = 1.0

        def scan(self) -> list[Any]:
            time.sleep(0.01)  # a blocking vendor call
            return [leaf("l1", "n1")]

    try:
        events = await run_for(Blocking(), 0.3, context())
    finally:
        release.set()
        await blocker
    assert [e.type for e in events] == [EventType.SNAPSHOT]


async def test_hung_scans_are_bounded_reported_and_released() -> None:
    release = threading.Event()
    calls = 0

    class Hanging(ScanningProvider):
        scan_timeout = 0.05
        initial_backoff = 0.01
        max_scan_threads = 3

        def scan(self) -> list[Any]:
            nonlocal calls
            calls += 1
            release.wait()
            return [leaf("l1", "n1")]

    provider = Hanging()
    ctx = context()
    events: asyncio.Queue[Event] = asyncio.Queue()
    task = asyncio.create_task(provider.start(events, asyncio.Queue(), ctx))
    try:
        await asyncio.sleep(0.6)
        assert calls == 3, "no more threads than max_scan_threads, however many scans time out"
        assert provider.threads.alive == provider.threads.hung == 3
        assert provider.stats.failures > 3
        assert provider.stats.last_error == "scan() not started: 3 earlier scan(s) still running (at most 3)"
        assert all(t.daemon for t in threading.enumerate() if t.name.startswith("scan-Hanging"))
        release.set()
        for _ in range(100):
            if provider.threads.alive == 0 and not events.empty():
                break
            await asyncio.sleep(0.02)
        assert (provider.threads.alive, provider.threads.hung) == (0, 0)
        assert events.get_nowait().type == EventType.SNAPSHOT, "scans work again once the vendor answers"
    finally:
        release.set()
        ctx.stopping.set()
        await asyncio.wait_for(task, 2)


def test_a_hung_scan_does_not_hold_up_process_exit() -> None:
    script = textwrap.dedent(
        """
        import asyncio, logging, threading
        from volcano_topology.provider import ProviderContext
        from volcano_topology.runner import NoSecrets, StaticCluster
        from volcano_topology.sdk import ScanningProvider

        class Hanging(ScanningProvider):
            scan_timeout = 0.1
            def scan(self):
                threading.Event().wait()  # never returns

        async def main():
            ctx = ProviderContext("t", logging.getLogger("t"), StaticCluster(), NoSecrets(), interval=10)
            task = asyncio.create_task(Hanging().start(asyncio.Queue(), asyncio.Queue(), ctx))
            await asyncio.sleep(0.3)
            ctx.stopping.set()
            await task

        asyncio.run(main())
        print("done")
        """
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert time.monotonic() - started < 10
