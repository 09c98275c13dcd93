"""Every HyperNode as the operator last saw it: the writer's and the status pass's view of the cluster.

Fed by one LIST and then a WATCH (:class:`~volcano_topology.reflector.Reflector`), so the
operator never lists HyperNodes per batch, per event or per status pass; each object
version is parsed once, on the watch thread, when it arrives. A 410 Gone lists once more.

The writer writes through: what the API server answered to its own apply or delete is put
into the cache at once (:meth:`HyperNodeCache.record`, :meth:`HyperNodeCache.forget`), so
its next plan starts from its own last write even before the watch echoes it. A watch event
never replaces a newer version already held (resourceVersions of one API server are etcd
revisions: they only grow), so the echo of the writer's own write is no change, and an
older event arriving after a newer write does not roll the view back. Only changes that
came from the watch and were not known yet reach ``subscribe``'s listeners: those are what
someone else did (drift), or our own writes seen first on the watch.

Writes stay conditional on the resourceVersion they were planned from, so a view a few
milliseconds behind the server can cost a 409 and a re-read, never a wrong write.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kubernetes import client

from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.plan import Observed
from volcano_topology.reflector import Reflector


@dataclass(frozen=True)
class Seen:
    """One HyperNode version: what planning needs, plus what the status pass compares."""

    observed: Observed
    status: Mapping[str, Any] = field(default_factory=dict)
    generation: int | None = None

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], previous: Seen | None = None, sent: tuple[HyperNode, Any] | None = None
    ) -> Seen:
        """``previous``: the version held; ``sent``: what we just applied (see ``Observed.from_dict``)."""
        generation = (obj.get("metadata") or {}).get("generation")
        observed = Observed.from_dict(obj, previous.observed if previous is not None else None, sent)
        return cls(observed, dict(obj.get("status") or {}), generation)

    @property
    def resource_version(self) -> str:
        return self.observed.resource_version


Listener = Callable[[Seen, bool], None]


TOMBSTONE_SECONDS = 600.0  # far longer than any request (with its retries) can take to be answered
log = logging.getLogger(__name__)


def newer(candidate: str, held: str) -> bool:
    """Is ``candidate`` a later version than ``held``? (Not numbers, e.g. another store: any difference is.)"""
    if candidate.isdigit() and held.isdigit():
        return int(candidate) > int(held)
    return candidate != held


class HyperNodeCache(Reflector[Seen]):
    what = "HyperNodes"

    def __init__(self, api: client.ApiClient, **options: Any) -> None:
        # HyperNodes are small and few (2,113 for 65,536 nodes): one page, one LIST request, in practice.
        options.setdefault("page_size", 5000)
        objects = client.CustomObjectsApi(api)
        super().__init__(functools.partial(objects.list_cluster_custom_object, GROUP, VERSION, PLURAL), **options)
        self._items: dict[str, Seen] = {}
        self._view: Mapping[str, Seen] = MappingProxyType(self._items)
        # Names known deleted -> (the version of the deletion, when): an older version of them, from the watch
        # or from a late answer to one of our requests, is not a resurrection. Kept TOMBSTONE_SECONDS at most.
        self._deleted: dict[str, tuple[str, float]] = {}
        self._listeners: list[Listener] = []

    # -- reading ---------------------------------------------------------------------

    def items(self) -> Mapping[str, Seen]:
        """A read-only live view: name -> the latest version seen."""
        return self._view

    def observed(self) -> dict[str, Observed]:
        """A copy, for a plan that awaits while it runs (the live view changes under it)."""
        return {name: seen.observed for name, seen in self._items.items()}

    def subscribe(self, listener: Listener) -> None:
        """``listener(seen, deleted)`` for each change the watch brought (deleted: ``seen`` is its last version)."""
        self._listeners.append(listener)

    # -- writing through (the writer's own requests) -----------------------------------

    def record(self, obj: Mapping[str, Any], sent: tuple[HyperNode, Any] | None = None) -> Seen:
        """What the API server answered to our write (or a fresh GET): kept unless a newer version is held.

        ``sent``: the HyperNode applied and its spec as sent, so an answer with that spec is not parsed again.
        """
        name = str((obj.get("metadata") or {}).get("name", ""))
        held = self._items.get(name)
        seen = Seen.from_dict(obj, held, sent)
        if self._is_news(name, seen.resource_version):  # a late answer never brings back a deleted object
            self._items[name] = seen
            self._deleted.pop(name, None)
        return seen

    def forget(self, name: str, resource_version: str) -> None:
        """We deleted ``name`` at ``resource_version`` (or a GET found it gone)."""
        held = self._items.get(name)
        if held is not None and newer(held.resource_version, resource_version):
            return  # what we hold is newer than what was deleted (recreated meanwhile)
        self._items.pop(name, None)
        self._tombstone(name, resource_version)

    def _tombstone(self, name: str, resource_version: str) -> None:
        now = time.monotonic()
        previous = self._deleted.pop(name, None)
        if previous is not None and not newer(resource_version, previous[0]):
            resource_version = previous[0]
        self._deleted[name] = (resource_version, now)  # re-inserted: the dict stays in order of time
        while self._deleted:
            oldest = next(iter(self._deleted))
            if now - self._deleted[oldest][1] <= TOMBSTONE_SECONDS:
                break
            del self._deleted[oldest]

    # -- the watch (Reflector hooks, on the event loop) --------------------------------

    def convert(self, obj: dict[str, Any]) -> Seen:
        # On the watch thread: a plain dict read of the version held (a stale one only costs a full parse).
        return Seen.from_dict(obj, self._items.get(str((obj.get("metadata") or {}).get("name", ""))))

    def wanted(self, name: str, resource_version: str) -> bool:
        # On the watch thread: plain dict reads. The echo of our own write is not parsed at all; a read racing
        # a write-through only costs a parse that ``put`` then ignores.
        return self._is_news(name, resource_version)

    def put(self, name: str, item: Seen) -> bool:
        if not self._is_news(name, item.resource_version):
            return False
        self._items[name] = item
        self._deleted.pop(name, None)
        self._tell(item, False)
        return True

    def delete(self, name: str, resource_version: str) -> bool:
        self._tombstone(name, resource_version)  # whoever deleted it: nothing older may bring it back
        held = self._items.get(name)
        if held is None:
            return False  # our own delete, already forgotten
        if newer(held.resource_version, resource_version):
            return False  # created again (by our write) after this deletion
        del self._items[name]
        self._tell(held, True)
        return True

    def replace(self, items: dict[str, Seen], resource_version: str) -> bool:
        first = self.generation == 0
        changed = False
        for name in [n for n in self._items if n not in items]:
            if newer(self._items[name].resource_version, resource_version):
                continue  # written by us after the list was taken
            gone = self._items.pop(name)
            changed = True
            if not first:
                self._tell(gone, True)
        for name, item in items.items():
            if not self._is_news(name, item.resource_version):
                continue
            self._items[name] = item
            changed = True
            if not first:
                self._tell(item, False)
        # A deletion the LIST already reflects needs no tombstone; one of ours after the LIST still does.
        self._deleted = {n: t for n, t in self._deleted.items() if newer(t[0], resource_version)}
        return changed or first

    def _is_news(self, name: str, version: str) -> bool:
        held = self._items.get(name)
        if held is not None:
            return newer(version, held.resource_version)
        gone = self._deleted.get(name)
        return gone is None or newer(version, gone[0])

    def _tell(self, seen: Seen, deleted: bool) -> None:
        for listener in self._listeners:
            try:
                listener(seen, deleted)
            except Exception:  # one listener's bug must not keep the others (or the view) from the change
                log.exception("HyperNode cache listener failed on %s", seen.observed.name)
