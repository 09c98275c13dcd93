"""Status of owned HyperNodes (the ``Synced`` condition, ``nodeCount``), written on change.

Computed from the watch-fed :class:`~volcano_topology.hypernodecache.HyperNodeCache`, never
from a LIST. Names are marked dirty by what can change their status -- the writer marking an
object synced or not, the watch bringing a new version, the Node view changing (``nodeCount``)
-- and after a short pause (so a burst is one pass) the dirty ones are computed and written,
concurrently. A full pass over every owned object also runs at each controller step, so a
missed mark costs seconds, not correctness (level-triggered).

Written only to HyperNodes owned by a provider this operator runs, only when the fields we
write differ, under the status field manager of that provider, and conditional on the
resourceVersion the status was computed from; the answer goes back into the cache, so the
writer's next conditional write starts from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from volcano_topology import ownership
from volcano_topology.hypernodecache import HyperNodeCache, Seen
from volcano_topology.kube import ClusterClient, KubeError, NotLeading
from volcano_topology.nodewatch import Changes, NodeCache
from volcano_topology.status import SyncState, condition, count_inputs, node_count, status_differs

log = logging.getLogger(__name__)

Notify = Callable[[str, SyncState], Awaitable[None]]


@dataclass(frozen=True)
class StatusScope:
    """What the status pass may do now (``None`` from the scope function: nothing, e.g. not leading)."""

    conditions: bool
    node_count: bool
    sync: Mapping[str, Mapping[str, SyncState]]  # provider -> name -> its Synced state (providers run here)
    gate: Callable[[], bool]
    # Names the writer has writes pending for: left until it is done (it marks them then), so a status
    # write never moves the resourceVersion its next conditional write was planned on.
    busy: Callable[[str], bool] = lambda _name: False


@dataclass
class StatusStats:
    writes: int = 0
    conflicts: int = 0
    passes: int = 0
    counts: int = 0  # nodeCount computed (not taken from the cache of counts)
    node_marks: int = 0  # names marked because a Node change concerned their selectors


@dataclass
class StatusWriter:
    cache: HyperNodeCache
    nodes: NodeCache
    client: ClusterClient
    scope: Callable[[], StatusScope | None]
    notify: Notify | None = None
    debounce: float = 0.1
    concurrency: int = 8
    stats: StatusStats = field(default_factory=StatusStats)
    _dirty: set[str] = field(default_factory=set)
    _all: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _counts: dict[str, tuple[tuple[str, tuple[int, ...]], int]] = field(default_factory=dict)
    # What each counted object's selectors read of the Node view, and the reverse: who reads a key, the names.
    _inputs: dict[str, tuple[bool, frozenset[str]]] = field(default_factory=dict)
    _readers_of_key: dict[str, set[str]] = field(default_factory=dict)
    _readers_of_names: set[str] = field(default_factory=set)
    # name -> monotonic time before which it is not written again: the API server's Retry-After is a floor.
    _not_before: dict[str, float] = field(default_factory=dict)

    def dirty(self, names: Iterable[str] | None = None) -> None:
        """Recompute these names (None: every owned object; empty: the names held back) soon."""
        if names is None:
            self._all = True
        else:
            self._dirty.update(names)
        self._wake.set()

    def seen(self, seen: Seen, deleted: bool) -> None:
        """A cache listener: a new version may need a new status; a deleted one needs nothing, ever."""
        name = seen.observed.name
        if deleted:
            self._forget_count(name)
            self._dirty.discard(name)
            self._not_before.pop(name, None)
        else:
            self.dirty([name])

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce)
            self._wake.clear()
            try:
                await self.write_pass()
            except Exception:
                log.exception("status pass failed; trying again at the next change")

    async def write_pass(self) -> None:
        """Compute the status of the dirty names (or of all) and write those that differ."""
        names: Iterable[str] | None = None if self._all else self._dirty
        self._all, self._dirty = False, set()
        scope = self.scope()
        if scope is None or not (scope.conditions or scope.node_count) or not self.cache.synced():
            return
        self.stats.passes += 1
        items = self.cache.items()
        if names is None:
            for gone in [n for n in self._counts if n not in items]:
                self._forget_count(gone)  # deleted by us (never told as a change): not kept forever
        candidates = list(items) if names is None else [n for n in names if n in items]
        # Counted only from a synced view: a count from a half-listed cluster would be written as fact.
        count_nodes = scope.node_count and self.nodes.synced()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        writes: list[tuple[Seen, str, dict[str, Any]]] = []
        for name in candidates:
            seen = items.get(name)  # the live view: an Event posted below awaits, and the object may go meanwhile
            if seen is None:
                continue
            if scope.busy(name):
                self._dirty.add(name)  # no wake-up: the writer marks it when its writes are done
                continue
            if self._held_back(name):
                continue
            owner = seen.observed.owner
            if owner is None or owner not in scope.sync or seen.observed.hypernode is None:
                continue  # not ours to describe: another operator's, a manual one, or not ours any more
            desired: dict[str, Any] = {}
            if count_nodes:
                desired["nodeCount"] = self._node_count(seen)
            state = scope.sync[owner].get(name)
            if scope.conditions and state is not None:
                conditions = seen.status.get("conditions")
                desired["conditions"] = [condition(state, conditions, seen.generation, now)]
                if self.notify is not None:
                    await self.notify(name, state)
            if desired and status_differs(desired, seen.status):
                writes.append((seen, owner, desired))
        if not writes or not scope.gate():
            return
        limit = asyncio.Semaphore(self.concurrency)

        async def write(seen: Seen, owner: str, desired: dict[str, Any]) -> None:
            async with limit:
                await self._write(seen, owner, desired, scope.gate)

        for result in await asyncio.gather(*(write(*w) for w in writes), return_exceptions=True):
            if isinstance(result, Exception) and not isinstance(result, NotLeading):
                log.error("status write failed unexpectedly: %r", result)

    async def _write(self, seen: Seen, owner: str, desired: dict[str, Any], gate: Callable[[], bool]) -> None:
        name = seen.observed.name
        try:
            answer = await self.client.apply_hypernode_status(
                name, desired, ownership.status_manager(owner), resource_version=seen.resource_version, gate=gate
            )
        except KubeError as exc:
            if exc.status == 404:  # gone: what the cache holds is behind
                self.cache.forget(name, seen.resource_version)
                return
            # 409: changed since it was seen; the newer version, from the watch, marks it again. Anything else:
            # the next full pass (every few seconds) tries again. Never at once: that would spin on a stale view.
            if exc.status == 409:
                self.stats.conflicts += 1
            if exc.retry_after:
                self._hold_back(name, exc.retry_after)
            log.log(logging.INFO if exc.status == 409 else logging.WARNING,
                    "status of HyperNode %s not written: %s", name, exc)  # fmt: skip
            return
        self.stats.writes += 1
        if answer:
            self.cache.record(answer)

    def _hold_back(self, name: str, seconds: float) -> None:
        """Not written again for ``seconds`` (a 429 or 503 with Retry-After); marked again when they are up."""
        self._not_before[name] = time.monotonic() + seconds
        asyncio.get_running_loop().call_later(seconds, self.dirty, [name])

    def _held_back(self, name: str) -> bool:
        until = self._not_before.get(name)
        if until is None:
            return False
        if time.monotonic() < until:
            return True  # the timer set by _hold_back marks it again
        del self._not_before[name]
        return False

    def nodes_changed(self, changes: Changes | None) -> int:
        """The Node view changed (None: it was listed for the first time); mark whose count may have moved.

        Only HyperNodes whose selectors read what changed are marked: a Node added or deleted concerns
        ``regexMatch`` and ``labelMatch`` members, a label change only the selectors naming that key, and
        nothing concerns ``exactMatch`` members. When nobody is concerned there is no pass at all.
        Returns how many names were marked.
        """
        if changes is None:
            self.dirty(None)
            return len(self.cache.items())
        marked: set[str] = set(self._readers_of_names) if changes.names else set()
        for key in changes.keys:
            marked |= self._readers_of_key.get(key, set())
        if marked:
            self.stats.node_marks += len(marked)
            self.dirty(marked)
        return len(marked)

    def _node_count(self, seen: Seen) -> int:
        """Counted again only when the spec or what its selectors read of the Node view changed."""
        hypernode = seen.observed.hypernode
        assert hypernode is not None
        name = seen.observed.name
        # uid: an object deleted and created again starts at generation 1 again, with other members maybe.
        version = f"{seen.observed.uid}/{seen.generation or seen.resource_version}"
        cached = self._counts.get(name)
        if cached is None or cached[0][0] != version:
            self._set_inputs(name, count_inputs(hypernode))
        names, keys = self._inputs[name]
        key = (version, self.nodes.inputs_version(names, keys))
        if cached is None or cached[0] != key:
            self.stats.counts += 1
            cached = self._counts[name] = (key, node_count(hypernode, self.nodes.labels()))
        return cached[1]

    def _set_inputs(self, name: str, inputs: tuple[bool, frozenset[str]]) -> None:
        self._forget_count(name)
        self._inputs[name] = inputs
        names, keys = inputs
        if names:
            self._readers_of_names.add(name)
        for key in keys:
            self._readers_of_key.setdefault(key, set()).add(name)

    def _forget_count(self, name: str) -> None:
        self._counts.pop(name, None)
        inputs = self._inputs.pop(name, None)
        if inputs is None:
            return
        self._readers_of_names.discard(name)
        for key in inputs[1]:
            readers = self._readers_of_key.get(key)
            if readers is not None:
                readers.discard(name)
                if not readers:
                    del self._readers_of_key[key]
