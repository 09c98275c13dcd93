"""One resource kept in memory by a paginated LIST and then a WATCH, on a thread of its own.

The ``kubernetes`` client blocks, so the LIST and the WATCH run on a daemon thread; each
object is converted there (parsed into whatever the cache keeps) and the change is applied
on the event loop, where the cache's readers live. Responses are read as plain JSON rather
than into the client's model objects, which at tens of thousands of objects costs seconds.

The watch resumes from the last resourceVersion it saw (bookmarks keep that fresh) and
lists again only when the server answers 410 Gone (the version is too old) or the stream
broke before it ever delivered one. ``generation`` goes up once for every change a subclass
says is visible in its view, so waiters wake only for what they can see.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")

# Calls the client's list function: (keyword arguments) -> an unparsed response (``_preload_content=False``).
ListCall = Callable[..., Any]


class Gone(Exception):
    """The resourceVersion to resume from is too old (410): list again."""


class Reflector(abc.ABC, Generic[Item]):
    """The LIST + WATCH loop; subclasses say how an object is kept (``convert``) and what a change is."""

    what = "objects"

    def __init__(
        self,
        call: ListCall,
        *,
        page_size: int = 500,
        watch_timeout: int = 300,
        request_timeout: float = 30.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.call = call
        self.page_size, self.watch_timeout, self.request_timeout = page_size, watch_timeout, request_timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.generation = 0
        self.lists = 0  # full LISTs done (one at start, one per 410 Gone): for tests and metrics
        self.errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()

    # -- what subclasses define ------------------------------------------------------

    @abc.abstractmethod
    def convert(self, obj: dict[str, Any]) -> Item:
        """Runs on the watch thread: the object as the cache keeps it."""

    def wanted(self, name: str, resource_version: str) -> bool:
        """Runs on the watch thread: False skips converting an event the view already has (an echo)."""
        return True

    @abc.abstractmethod
    def replace(self, items: dict[str, Item], resource_version: str) -> bool:
        """Runs on the event loop after a full LIST; True when the view changed."""

    @abc.abstractmethod
    def put(self, name: str, item: Item) -> bool:
        """Runs on the event loop for ADDED/MODIFIED; True when the view changed."""

    @abc.abstractmethod
    def delete(self, name: str, resource_version: str) -> bool:
        """Runs on the event loop for DELETED; True when the view changed."""

    # -- the view (event loop side) --------------------------------------------------

    @property
    def started(self) -> bool:
        return self._thread is not None

    def synced(self) -> bool:
        return self.generation > 0

    async def changed(self, seen: int) -> int:
        """Wait until synced and ``generation != seen``; return the generation."""
        assert self._changed is not None, f"{type(self).__name__}.start() was not called"
        async with self._changed:
            await self._changed.wait_for(lambda: self.generation > 0 and self.generation != seen)
            return self.generation

    async def wait_synced(self) -> None:
        await self.changed(0)

    def start(self, why: str = "") -> None:
        """Start the watch thread (once; later calls do nothing). Must be called on the event loop."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        self._thread = threading.Thread(target=self._run, name=f"{self.what}-watch", daemon=True)
        self._thread.start()
        log.warning("watching %s%s", self.what, f" for {why}" if why else "")

    def stop(self) -> None:
        """Ask the watch thread to end; never blocks (the thread is a daemon, it cannot hold up exit)."""
        self._stop.set()
        with self._lock:
            response = self._response
        # Closing the response would wait for the TLS lock the blocked read holds; shutting the
        # socket down makes that read return at once instead.
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the watch thread to end (tests, orderly shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    # -- the watch (thread side) -----------------------------------------------------

    def _run(self) -> None:
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
                failures = 0
            except Gone:
                log.info("%s watch: resourceVersion %s expired, listing again", self.what, resource_version)
                resource_version = None
            except Exception as exc:
                if self._stop.is_set():
                    break
                failures += 1
                self.errors += 1
                delay = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
                log.warning("%s watch failed (%s: %s); retrying in %.0fs", self.what, type(exc).__name__, exc, delay)
                self._stop.wait(delay)

    def _list(self) -> str:
        items: dict[str, Item] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size}
            if token:
                kwargs["_continue"] = token
            response: Any = self.call(_preload_content=False, _request_timeout=self.request_timeout, **kwargs)
            page = json.loads(response.data)
            for obj in page.get("items") or ():
                items[(obj.get("metadata") or {})["name"]] = self.convert(obj)
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                version = str(meta.get("resourceVersion") or "")
                self.lists += 1
                self._publish(functools.partial(self.replace, items, version))
                return version

    def _watch(self, resource_version: str) -> str:
        response: Any = self.call(
            watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout, _preload_content=False,
            _request_timeout=(self.request_timeout, self.watch_timeout + self.request_timeout),
        )  # fmt: skip
        with self._lock:
            self._response = response
        try:
            for event in _lines(response):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                metadata = obj.get("metadata") or {}
                resource_version = str(metadata.get("resourceVersion") or resource_version)
                if kind == "BOOKMARK":
                    continue
                name = metadata.get("name")
                if not name:
                    continue
                if kind == "DELETED":
                    self._publish(functools.partial(self.delete, name, resource_version))
                elif self.wanted(name, resource_version):
                    try:
                        item = self.convert(obj)
                    except Exception:  # one object this cache cannot read must not stop the watch for good
                        self.errors += 1
                        log.exception("%s watch: could not read %s (version %s); skipped", self.what, name,
                                      resource_version)  # fmt: skip
                        continue
                    self._publish(functools.partial(self.put, name, item))
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return resource_version

    def _publish(self, change: Callable[[], bool]) -> None:
        """Apply ``change`` on the event loop; when it changed the view, bump the generation and wake waiters."""
        loop = self._loop
        assert loop is not None

        async def apply() -> None:
            assert self._changed is not None
            try:
                changed = change()
            except Exception:  # nobody awaits this coroutine: say so, or the failure is silent
                log.exception("%s watch: applying a change failed", self.what)
                changed = True  # part of it may have been applied: wake the waiters to look
            if changed:
                # Bumped in the same step as the change (no await between): a subclass stamps what changed
                # with ``generation + 1``, which is then exactly the generation that carries it.
                self.generation += 1
                async with self._changed:
                    self._changed.notify_all()

        coroutine = apply()
        try:
            asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # the loop is closed: the process (or the test) is ending
            coroutine.close()


def _lines(response: Any) -> Iterator[dict[str, Any]]:
    """Watch events from a newline-delimited JSON stream."""
    buffer = b""
    for chunk in response.stream(65536, decode_content=True):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)
