"""The names and labels of every Node, kept by one paginated LIST and then a WATCH.

Providers that follow Node labels (``needs_nodes = True``) and the ``nodeCount`` status read
this view instead of listing Nodes. Only names and labels are kept (not whole Node bodies,
whose status and managedFields are large), and responses are parsed as plain JSON rather
than into the client's model objects, which at 16k Nodes costs seconds of CPU.

The watch runs on a daemon thread of its own (the ``kubernetes`` client blocks), resumes
from the last resourceVersion it saw (bookmarks keep that fresh), and lists again only
when the server answers 410 Gone (the version is too old) or the stream broke before it
ever delivered one. The generation goes up once for every change that is visible in the
view (a Node added, deleted, or relabelled); status-only updates of a Node, which are most
of the watch traffic, change nothing and wake nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from kubernetes import client

log = logging.getLogger(__name__)

NodeLabels = Mapping[str, Mapping[str, str]]


class Gone(Exception):
    """The resourceVersion to resume from is too old (410): list again."""


class NodeCache:
    """Name -> labels of every Node; ``generation`` 0 until the first LIST is in, then bumped on each change."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        page_size: int = 500,
        watch_timeout: int = 300,
        request_timeout: float = 30.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.api = api
        self.page_size, self.watch_timeout, self.request_timeout = page_size, watch_timeout, request_timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.generation = 0
        self.lists = 0  # full LISTs done (one at start, one per 410 Gone): for tests and metrics
        self.errors = 0
        self._nodes: dict[str, Mapping[str, str]] = {}
        self._view: NodeLabels = MappingProxyType(self._nodes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()

    # -- the view (event loop side) --------------------------------------------------

    @property
    def started(self) -> bool:
        return self._thread is not None

    def labels(self) -> NodeLabels:
        return self._view

    def synced(self) -> bool:
        return self.generation > 0

    async def changed(self, seen: int) -> int:
        """Wait until synced and ``generation != seen``; return the generation."""
        assert self._changed is not None, "NodeCache.start() was not called"
        async with self._changed:
            await self._changed.wait_for(lambda: self.generation > 0 and self.generation != seen)
            return self.generation

    def start(self, why: str = "") -> None:
        """Start the watch thread (once; later calls do nothing). Must be called on the event loop."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
        self._thread.start()
        log.warning("watching Nodes (names and labels)%s", f" for {why}" if why else "")

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
                log.info("Node watch: resourceVersion %s expired, listing again", resource_version)
                resource_version = None
            except Exception as exc:
                if self._stop.is_set():
                    break
                failures += 1
                self.errors += 1
                delay = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
                log.warning("Node watch failed (%s: %s); retrying in %.0fs", type(exc).__name__, exc, delay)
                self._stop.wait(delay)

    def _list(self) -> str:
        core = client.CoreV1Api(self.api)
        nodes: dict[str, Mapping[str, str]] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size}
            if token:
                kwargs["_continue"] = token
            response: Any = core.list_node(_preload_content=False, _request_timeout=self.request_timeout, **kwargs)
            page = json.loads(response.data)
            for item in page.get("items") or ():
                metadata = item.get("metadata") or {}
                nodes[metadata["name"]] = MappingProxyType(dict(metadata.get("labels") or {}))
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.lists += 1
                self._publish(lambda: self._replace(nodes))
                return str(meta.get("resourceVersion") or "")

    def _watch(self, resource_version: str) -> str:
        core = client.CoreV1Api(self.api)
        response: Any = core.list_node(
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
                    self._publish(lambda n=name: self._delete(n))
                else:
                    labels = MappingProxyType(dict(metadata.get("labels") or {}))
                    self._publish(lambda n=name, lb=labels: self._put(n, lb))
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return resource_version

    def _publish(self, change: Any) -> None:
        """Apply ``change`` (returns True when the view changed) on the event loop, waking waiters."""
        loop = self._loop
        assert loop is not None

        async def apply() -> None:
            assert self._changed is not None
            if change():
                async with self._changed:
                    self.generation += 1
                    self._changed.notify_all()

        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            asyncio.run_coroutine_threadsafe(apply(), loop)

    # -- changes (event loop side) ---------------------------------------------------

    def _replace(self, nodes: dict[str, Mapping[str, str]]) -> bool:
        if nodes == self._nodes and self.generation > 0:
            return False
        self._nodes.clear()
        self._nodes.update(nodes)
        return True

    def _put(self, name: str, labels: Mapping[str, str]) -> bool:
        if self._nodes.get(name) == labels:
            return False  # a status-only update: nothing a provider or nodeCount looks at
        self._nodes[name] = labels
        return True

    def _delete(self, name: str) -> bool:
        return self._nodes.pop(name, None) is not None


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
