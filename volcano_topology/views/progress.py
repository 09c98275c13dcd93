"""Progress on a terminal, silence when piped: one line rewritten in place on standard error."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable
from typing import TextIO, TypeVar

T = TypeVar("T")


class Progress:
    """``step(text)`` rewrites the line (at most every ``every`` seconds); ``done()`` clears it.

    Writes nothing unless ``stream`` is a terminal, so logs and pipes never get carriage returns.
    """

    def __init__(self, stream: TextIO | None = None, *, every: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty is not None and isatty())
        self.every = every
        self._last = 0.0
        self._width = 0

    def step(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def done(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


async def ticking(progress: Progress, what: str, work: Awaitable[T]) -> T:
    """Await ``work`` while ``progress`` shows ``what … Ns``, counting up every half second (terminal only)."""
    started = time.monotonic()

    async def tick() -> None:
        while True:
            progress.step(f"{what} … {time.monotonic() - started:.0f}s")
            await asyncio.sleep(0.5)

    ticker = asyncio.create_task(tick())
    try:
        return await work
    finally:
        ticker.cancel()
        progress.done()
