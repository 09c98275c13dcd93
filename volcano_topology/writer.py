"""Consumes each provider's events and makes the API server match them.

Per provider, one batch at a time: take every queued event, coalesce (a SNAPSHOT
supersedes everything queued before it; a newer event for a name supersedes an older
one), validate, check the strict tree over the provider's whole resulting set, plan
against what the cluster has, then write in tree order with retries. What cannot be
applied goes back to that provider as a ``Reply``.

Decisions (see the README's "Provider contract"):

- A SNAPSHOT is all or nothing. Any invalid object, tree violation, ownership
  conflict or deletion-guard refusal rejects it whole: the cluster keeps what it had,
  and the provider gets one reply per problem. Half a topology can put a node in two
  leaves or orphan a subtree; the previous whole one cannot.
- Single events stand alone: an invalid or conflicting one is replied to and skipped,
  the others are applied. If the batch together breaks the tree, each event is tried
  on its own so only the offending ones are refused.
- When transient failures outlast the retry budget, the batch is kept -- in coalesced
  form, at most one snapshot and one event per name, so memory is bounded by the
  desired state and not by the outage's length -- and tried again after
  ``resync_after_failure`` unless newer events arrive first (they are coalesced with
  it), so an API-server outage longer than the budget still converges.
- A single event that would put a node in a second leaf or a HyperNode under a second
  parent waits up to ``claim_wait`` seconds for the event that releases it; only then
  is it replied to as a ``TopologyViolation``.
- Drift repair is by name: ``ProviderChannel.suspect(name, ...)`` (from the watch) asks
  "reconcile this object", and the writer answers it between batches against the
  provider's latest accepted desired state, never against a stored copy of an older
  one. Watch events that echo the writer's own writes (a resourceVersion it wrote, a
  delete it made) are not drift. An object changed or deleted by someone else
  ``contest_threshold`` times within ``contest_window`` seconds is contested: it is not
  repaired (nor rewritten by an unchanged snapshot) for ``contest_hold`` seconds, so two
  writers never fight forever.
- The writer loop survives anything: an unexpected exception is logged with its
  traceback, counted (``stats.crashes``), and the batch is kept and retried after a
  backoff. ``Writer.problems()`` reports a writer that is not making progress.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from volcano_topology import fence, ownership
from volcano_topology.api import GROUP, VERSION, HyperNode
from volcano_topology.hypernodecache import HyperNodeCache, newer
from volcano_topology.kube import HyperNodeClient, KubeError
from volcano_topology.kube import NotLeading as KubeNotLeading
from volcano_topology.plan import (
    Create,
    Delete,
    DeletionGuard,
    Observed,
    Operation,
    Plan,
    Update,
    describe_owner,
    matches,
    plan_changes,
    with_ownership,
)
from volcano_topology.problems import Problem
from volcano_topology.provider import (
    ApplyError,
    DeletionRefused,
    Event,
    EventType,
    InvalidHyperNode,
    MalformedEvent,
    OwnershipConflict,
    Reply,
    RequestRejected,
    RetriesExhausted,
    TopologyViolation,
)
from volcano_topology.retries import RetryPolicy, StaleRead, is_retriable
from volcano_topology.status import SyncState
from volcano_topology.tree import missing_member_problems, tree_problems
from volcano_topology.validation import check_document

log = logging.getLogger(__name__)

Transform = Callable[[HyperNode], HyperNode]
T = TypeVar("T")


@dataclass(frozen=True)
class WriterSettings:
    queue_size: int = 256
    reply_queue_size: int = 256
    max_batch: int = 4096
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    guard: DeletionGuard = field(default_factory=DeletionGuard)
    admission: bool = True
    dry_run: bool = False
    resync_after_failure: float = 5.0
    claim_wait: float = 10.0  # a claim waits this long for its matching release
    contest_window: float = 60.0
    contest_threshold: int = 3  # foreign changes within the window that make an object contested
    contest_hold: float = 600.0  # how long a contested object is left alone
    crash_backoff: float = 1.0  # first wait after an unexpected exception; doubles up to 60 s
    stall_after: float = 180.0  # queued work with no finished batch for this long: not ready
    stuck_after: float = 900.0  # one batch running this long: not alive


@dataclass
class ProviderStats:
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    writes: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    superseded: int = 0
    guard_trips: int = 0
    replies_dropped: int = 0
    batches: int = 0  # completed
    last_sync: float | None = None
    # The newest event of the last batch applied whole: when its provider made it, and how long it then took.
    last_applied_event: float | None = None
    last_event_latency: float | None = None
    apply_seconds: float = 0.0
    repairs: int = 0  # objects put back after someone else changed or deleted them
    foreign_changes: int = 0
    crashes: int = 0  # unexpected exceptions the writer loop survived
    last_crash: str | None = None


@dataclass(frozen=True)
class Suspect:
    """A watch event about an owned object: maybe drift, maybe the echo of our own write."""

    resource_version: str | None
    deleted: bool
    retry: bool = False  # put back after a repair that could not be written: not another foreign change


# Our own recent resourceVersions per name: the watch may deliver an older echo after a newer write.
_ECHOES_KEPT = 8


@dataclass
class ProviderChannel:
    """One provider's side of the writer: its queues, its numbers, what it owns."""

    name: str
    events: asyncio.Queue[Event]
    replies: asyncio.Queue[Reply]
    stats: ProviderStats = field(default_factory=ProviderStats)
    transform: Transform | None = None
    owned: dict[str, HyperNode] = field(default_factory=dict)  # as last applied
    # The provider's latest accepted desired state (None until it said anything): what repairs restore.
    desired: dict[str, HyperNode] | None = None
    # Events kept for a retry, coalesced: at most one snapshot and one event per name.
    retained: list[Event] = field(default_factory=list)
    retry_at: float | None = None  # monotonic time of the retry, when it was kept after a failure
    held: dict[str, float] = field(default_factory=dict)  # claims waiting for their release: name -> deadline
    # Set while the writer waits for events with nothing left to apply or retry.
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Per HyperNode: is it what this provider last asked for? (the Synced condition)
    sync: dict[str, SyncState] = field(default_factory=dict)
    suspects: dict[str, Suspect] = field(default_factory=dict)
    written: dict[str, collections.deque[str]] = field(default_factory=dict)  # resourceVersions we wrote
    deleted: set[str] = field(default_factory=set)  # names we deleted, until the watch echoes it
    foreign: dict[str, collections.deque[float]] = field(default_factory=dict)  # times of others' changes
    contested: dict[str, float] = field(default_factory=dict)  # name -> monotonic time it is left alone until
    # Someone else's objects that carry our labels only because our create met them; not ours, whatever the
    # labels say, until our labels are given back.
    disowned: set[str] = field(default_factory=set)
    last_progress: float = field(default_factory=time.monotonic)
    busy_since: float | None = None
    on_mark: Callable[[list[str]], None] | None = None  # told which names' Synced state was just set
    # Names with writes of the running plan still to come: their status waits (a status write in between
    # would move the resourceVersion the next spec write is conditional on).
    writing: set[str] = field(default_factory=set)
    planning: bool = False  # a batch is being validated and planned: its owned objects' status waits too

    def mark(self, names: Iterable[str], synced: bool, reason: str, message: str) -> None:
        names = list(names)
        for name in names:
            self.sync[name] = SyncState(synced, reason, message)
        if self.on_mark is not None and names:
            self.on_mark(names)

    def suspect(self, name: str, resource_version: str | None, *, deleted: bool) -> None:
        """The watch saw ``name`` change or go: reconcile it against the latest desired state, soon."""
        self.suspects[name] = Suspect(resource_version, deleted)
        self.wake.set()

    def is_contested(self, name: str, now: float | None = None) -> bool:
        until = self.contested.get(name)
        if until is None:
            return False
        if (now if now is not None else time.monotonic()) >= until:
            del self.contested[name]
            self.foreign.pop(name, None)
            return False
        return True

    def pending(self) -> int:
        """Events waiting: queued, kept for a retry, or held."""
        return self.events.qsize() + len(self.retained)

    def wrote(self, name: str, resource_version: str) -> None:
        self.written.setdefault(name, collections.deque(maxlen=_ECHOES_KEPT)).append(resource_version)

    @property
    def manager(self) -> str:
        return ownership.field_manager(self.name)


@dataclass
class Batch:
    snapshot: Event | None = None
    singles: list[Event] = field(default_factory=list)
    malformed: list[tuple[Any, str]] = field(default_factory=list)
    superseded: int = 0

    def kept(self) -> list[Event]:
        """What is worth keeping for a retry: the coalesced events, never the raw stream."""
        return [*([self.snapshot] if self.snapshot is not None else []), *self.singles]


def coalesce(events: Sequence[Any]) -> Batch:
    """The last SNAPSHOT and, after it, the newest event per name, in order of arrival."""
    batch = Batch()
    latest: dict[str, Event] = {}
    for event in events:
        problem = _malformation(event)
        if problem is not None:
            batch.malformed.append((event, problem))
        elif event.type is EventType.SNAPSHOT:
            batch.superseded += len(latest) + (batch.snapshot is not None)
            batch.snapshot, latest = event, {}
        else:
            if event.target in latest:
                batch.superseded += 1
                del latest[event.target]  # re-insert so the order is that of the newest event
            latest[event.target] = event
    batch.singles = list(latest.values())
    return batch


def _malformation(event: Any) -> str | None:
    if not isinstance(event, Event):
        return f"expected an Event, got {type(event).__name__}"
    if not isinstance(event.type, EventType):
        return f"event type must be an EventType (use Event.create/update/delete/snapshot), got {event.type!r}"
    if event.type in (EventType.CREATE, EventType.UPDATE):
        if not isinstance(event.hypernode, HyperNode):
            return f"{event.type} needs a HyperNode, got {type(event.hypernode).__name__}"
        if not event.hypernode.metadata.name:
            return f"{event.type} of a HyperNode without metadata.name"
    elif event.type is EventType.DELETE:
        if not isinstance(event.name, str) or not event.name:
            return "DELETE needs the name of a HyperNode"
    elif event.type is EventType.SNAPSHOT:
        if not isinstance(event.hypernodes, tuple | list) or not all(
            isinstance(h, HyperNode) for h in event.hypernodes
        ):
            return "SNAPSHOT must hold HyperNode objects only"
    else:
        return f"unknown event type {event.type!r}"
    return None


# Raised where a write would be sent while this replica may not write (not, or no longer surely, the
# leader): by the writer's own gate check, and by the client's check right before sending.
NotLeading = KubeNotLeading


class Writer:
    def __init__(
        self,
        client: HyperNodeClient,
        settings: WriterSettings | None = None,
        gate: Callable[[], bool] | None = None,
        cache: HyperNodeCache | None = None,
        on_mark: Callable[[list[str]], None] | None = None,
        stats: dict[str, ProviderStats] | None = None,
    ) -> None:
        self.client = client
        # Per provider, shared by the writers one process makes (one per term as leader, a provider restarted):
        # the counters in /metrics only ever go up while the process lives.
        self.stats = {} if stats is None else stats
        self.settings = settings or WriterSettings()
        self.channels: dict[str, ProviderChannel] = {}
        # Checked before every request that writes: the fence that keeps a deposed leader from writing.
        self.gate = gate or (lambda: True)
        # The operator's watch-fed view of the cluster (written through by every write here). Without one
        # (one-shot uses: a removed provider's cleanup, tests) each batch LISTs.
        self.cache = cache
        self.on_mark = on_mark  # status follows: each channel tells it which names' Synced state changed
        # The last LIST's objects, parsed: an object whose resourceVersion did not change is not validated again.
        self._parsed: dict[str, tuple[str, Observed]] = {}
        self._planner: ThreadPoolExecutor | None = None

    def open(self, provider: str, transform: Transform | None = None) -> ProviderChannel:
        channel = ProviderChannel(
            provider,
            asyncio.Queue(self.settings.queue_size),
            asyncio.Queue(self.settings.reply_queue_size),
            transform=transform,
            on_mark=self.on_mark,
            stats=self.stats.setdefault(provider, ProviderStats()),
        )
        self.channels[provider] = channel
        return channel

    async def run(self, channel: ProviderChannel) -> None:
        """Consume ``channel`` until cancelled. No exception ends it: each is logged, counted and retried."""
        failures = 0
        while True:
            events: list[Any] = []
            try:
                if channel.events.empty() and not channel.retained and not channel.suspects:
                    channel.idle.set()
                    channel.last_progress = time.monotonic()
                events = await self._next_batch(channel)
                channel.idle.clear()
                channel.busy_since = time.monotonic()
                if events:
                    await self.process(channel, events)
                # Repairs come last: after a kept batch is applied and with nothing newer queued.
                if channel.suspects and not channel.retained and channel.events.empty() and self._repair_due(channel):
                    await self.repair(channel)
                if not channel.retained:
                    channel.last_progress = time.monotonic()  # a batch that is kept for a retry is no progress
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                channel.stats.crashes += 1
                channel.stats.last_crash = f"{type(exc).__name__}: {exc}"
                delay = min(self.settings.crash_backoff * 2.0 ** (failures - 1), 60.0)
                log.exception("provider %s: the writer failed unexpectedly; its events are kept, retrying in %.1fs",
                              channel.name, delay)  # fmt: skip
                with contextlib.suppress(Exception):  # keep the work, in its bounded coalesced form
                    channel.retained = coalesce([*channel.retained, *events]).kept()
                await asyncio.sleep(delay)
            finally:
                channel.busy_since = None

    @staticmethod
    def _repair_due(channel: ProviderChannel) -> bool:
        return channel.retry_at is None or channel.retry_at <= time.monotonic()

    def problems(self, now: float | None = None) -> list[str]:
        """Why a writer is not making progress (for readiness): queued work and no finished batch lately."""
        now = time.monotonic() if now is None else now
        found = []
        for name, channel in sorted(self.channels.items()):
            waiting = channel.pending()
            if waiting and now - channel.last_progress > self.settings.stall_after:
                found.append(f"provider {name}: {waiting} event(s) waiting and no batch finished "
                             f"for {now - channel.last_progress:.0f}s")  # fmt: skip
        return found

    def stuck(self, now: float | None = None) -> list[str]:
        """Writers inside one batch for longer than ``stuck_after`` (for liveness: a restart is the cure)."""
        now = time.monotonic() if now is None else now
        return [
            f"provider {name}: one batch has been running for {now - channel.busy_since:.0f}s"
            for name, channel in sorted(self.channels.items())
            if channel.busy_since is not None and now - channel.busy_since > self.settings.stuck_after
        ]

    async def _next_batch(self, channel: ProviderChannel) -> list[Any]:
        """Kept events plus whatever is queued; waits for an event, a repair, or the time to retry kept ones."""
        # Repairs wait while a failed batch is kept (what differs then is mostly our own unfinished plan),
        # and after a failed repair until its retry time.
        if not channel.suspects or channel.retained or not self._repair_due(channel):
            deadlines = [channel.retry_at] if channel.retry_at is not None else []
            deadlines += channel.held.values()
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            if channel.retained and timeout is None:
                timeout = self.settings.resync_after_failure
            channel.wake.clear()
            getter = asyncio.ensure_future(channel.events.get())
            waker = asyncio.ensure_future(channel.wake.wait())
            # A kept batch is retried at its time or with new events, not early because the watch spoke.
            waits = {getter} if channel.retained else {getter, waker}
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()
                if not getter.done():
                    getter.cancel()
                    await asyncio.gather(getter, return_exceptions=True)
            first = [getter.result()] if getter.done() and not getter.cancelled() else []
        else:
            first = []
        batch, channel.retained, channel.retry_at = [*channel.retained, *first], [], None
        while len(batch) < self.settings.max_batch:
            try:
                batch.append(channel.events.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def process(self, channel: ProviderChannel, events: Sequence[Any]) -> bool:
        """Apply one batch; True when everything in it was applied."""
        started = time.monotonic()
        stats = channel.stats
        batch = coalesce(events)
        malformed = {id(raw) for raw, _ in batch.malformed}
        for event in events:
            if id(event) not in malformed:
                stats.events[event.type.value] += 1
        stats.events["malformed"] += len(batch.malformed)
        if not batch.malformed:
            stats.events.pop("malformed", None)
        stats.superseded += batch.superseded
        for raw, why in batch.malformed:
            self._reply(channel, raw if isinstance(raw, Event) else None, MalformedEvent(f"{why}: {raw!r:.200}"))
        if batch.snapshot is None and not batch.singles:
            return True
        channel.planning = True
        try:
            return await self._process(channel, batch, started)
        finally:
            channel.planning = False
            if channel.on_mark is not None:
                channel.on_mark([])  # status held back while planning is due now

    async def _process(self, channel: ProviderChannel, batch: Batch, started: float) -> bool:
        stats = channel.stats
        try:
            await self._settle_disowned(channel)
            observed = await self._observe(channel)
        except NotLeading:
            self._keep(channel, batch.kept(), retry=True)  # for a later term; a new leader reads the cluster itself
            return False
        except (KubeError, StaleRead) as exc:
            self._give_up(channel, batch, exc)
            return False
        outcome = _Outcome()
        if batch.snapshot is not None:
            await self._apply_snapshot(channel, batch.snapshot, observed, outcome)
        if batch.singles:
            try:
                if batch.snapshot is not None:
                    observed = await self._observe(channel)  # the snapshot changed what the events apply to
                await self._apply_singles(channel, batch.singles, observed, outcome)
            except (KubeError, StaleRead, NotLeading):
                outcome.failed = outcome.transient = True
        kept = batch.kept() if outcome.transient else []
        kept_names = {e.target for e in kept}
        kept += [e for e in outcome.held if e.target not in kept_names]
        self._keep(channel, kept, retry=outcome.transient)
        stats.apply_seconds += time.monotonic() - started
        stats.batches += 1
        if outcome.ok:
            stats.last_sync = time.time()
            newest = max((e.made for e in batch.kept()), default=None)
            if newest is not None:
                stats.last_applied_event, stats.last_event_latency = newest, stats.last_sync - newest
        return outcome.ok and not outcome.held

    # -- snapshots -------------------------------------------------------------------

    async def _apply_snapshot(
        self, channel: ProviderChannel, event: Event, observed: Mapping[str, Observed], outcome: _Outcome
    ) -> None:
        desired: dict[str, HyperNode] = {}
        errors: list[ApplyError] = []
        for hypernode in event.hypernodes:
            name = hypernode.metadata.name or "?"
            if name in desired:
                errors.append(InvalidHyperNode("appears more than once in the snapshot", name=name))
                continue
            valid, problems = self._prepare(channel, hypernode)
            if valid is None:
                errors.append(_invalid(name, problems))
            else:
                desired[name] = valid
        owned = {name for name, o in observed.items() if o.owner == channel.name}
        if not errors:
            others = set(observed) - owned  # members may name other owners' HyperNodes, never nothing
            found = await self._off_loop(lambda: [*tree_problems(desired), *missing_member_problems(desired, others)])
            errors = [_violation(p) for p in found]
        # A contested object the provider still wants unchanged is left as it is: rewriting it is the fight.
        previous = channel.desired or {}
        now = time.monotonic()
        hold = {n for n in desired if channel.is_contested(n, now) and previous.get(n) == desired[n]}
        to_write = {n: h for n, h in desired.items() if n not in hold}
        plan = (
            await self._off_loop(lambda: plan_changes(channel.name, to_write, observed, delete=owned - set(desired)))
            if not errors
            else Plan()
        )
        errors.extend(
            OwnershipConflict(f"already exists and belongs to {c.owner}", name=c.name) for c in plan.conflicts
        )
        if not errors:
            errors.extend(_violation(p) for p in _unordered_problems(plan))
        if not errors:
            deleting = sum(isinstance(op, Delete) for op in plan.operations)
            refusal = self.settings.guard.refusal(len(owned), deleting, len(desired))
            if refusal is not None:
                channel.stats.guard_trips += 1
                errors.append(DeletionRefused(refusal))
        if errors:
            for error in errors:
                self._reply(channel, event, error)
            unnamed = [n for n in owned if n not in {e.name for e in errors}]
            channel.mark(unnamed, False, "SnapshotRejected", f"the provider's latest snapshot was refused: {errors[0]}")
            outcome.failed = True
            return
        channel.desired = dict(desired)
        self._log_plan(channel, plan, str(event))
        channel.mark(plan.unchanged, True, "Applied", "matches what the provider reported")
        if await self._execute(channel, plan, lambda _name: event, outcome):
            channel.owned = desired

    # -- single events ---------------------------------------------------------------

    async def _apply_singles(
        self, channel: ProviderChannel, events: list[Event], observed: Mapping[str, Observed], outcome: _Outcome
    ) -> None:
        accepted: dict[str, tuple[Event, HyperNode | None]] = {}
        for event in events:
            if event.type is EventType.DELETE:
                accepted[event.target] = (event, None)
                continue
            assert event.hypernode is not None
            valid, problems = self._prepare(channel, event.hypernode)
            if valid is None:
                channel.held.pop(event.target, None)
                self._reply(channel, event, _invalid(event.target, problems))
                outcome.failed = True
            else:
                accepted[event.target] = (event, valid)
        if not accepted:
            return
        violations = await self._try_singles(channel, list(accepted.values()), observed, outcome)
        if violations is None:
            return
        remaining = list(accepted.values())
        if len(remaining) > 1:
            # Find the offenders: each event alone, against the cluster as the events before it left it,
            # in passes, so a claim listed before its release still lands once the release has.
            progressed = True
            while remaining and progressed:
                progressed = False
                for item in list(remaining):
                    try:
                        fresh = await self._observe(channel)
                    except (KubeError, StaleRead, NotLeading):
                        outcome.failed = outcome.transient = True  # a stale view could let two claims through
                        return
                    found = await self._try_singles(channel, [item], fresh, outcome)
                    if found is None:
                        remaining.remove(item)
                        progressed = True
                    else:
                        violations = found
            if not remaining:
                return
            if len(remaining) > 1:
                # Each alone is fine but not together: judge each against the cluster once more for the reply.
                for item in remaining:
                    try:
                        found = await self._try_singles(channel, [item], await self._observe(channel), outcome)
                    except (KubeError, StaleRead, NotLeading):
                        outcome.failed = outcome.transient = True
                        return
                    if found:
                        self._refuse_or_hold(channel, item[0], found, outcome)
                return
        self._refuse_or_hold(channel, remaining[0][0], violations, outcome)

    async def _try_singles(
        self,
        channel: ProviderChannel,
        items: list[tuple[Event, HyperNode | None]],
        observed: Mapping[str, Observed],
        outcome: _Outcome,
    ) -> list[Problem] | None:
        """Apply ``items`` together when the provider's whole set stays a strict tree; else its problems."""
        base = {n: o.hypernode for n, o in observed.items() if o.owner == channel.name and o.hypernode is not None}
        intent = dict(base)
        for event, hypernode in items:
            if hypernode is None:
                intent.pop(event.target, None)
            else:
                intent[event.target] = hypernode
        others = {n for n, o in observed.items() if o.owner != channel.name}
        violations = [*tree_problems(intent), *missing_member_problems(intent, others)]
        if violations:
            return violations
        changed = {event.target: event for event, _ in items}
        deleted = [n for n, e in changed.items() if e.type is EventType.DELETE]
        plan = plan_changes(channel.name, {n: intent[n] for n in changed if n in intent}, observed, delete=deleted)
        if plan.unordered:
            return _unordered_problems(plan)
        for name in changed:
            channel.held.pop(name, None)
        refused = {c.name for c in plan.conflicts}
        for conflict in plan.conflicts:
            self._reply(
                channel, changed[conflict.name],
                OwnershipConflict(f"already exists and belongs to {conflict.owner}", name=conflict.name),
            )  # fmt: skip
            outcome.failed = True
        for name in deleted:
            current = observed.get(name)
            if current is not None and current.owner != channel.name:
                refused.add(name)
                self._reply(
                    channel, changed[name],
                    OwnershipConflict(f"not deleted: it belongs to {describe_owner(current)}", name=name),
                )  # fmt: skip
                outcome.failed = True
        if channel.desired is None:
            channel.desired = dict(base)
        for name, (_, hypernode) in ((e.target, (e, h)) for e, h in items):
            if name in refused:
                continue
            if hypernode is None:
                channel.desired.pop(name, None)
            else:
                channel.desired[name] = hypernode
        self._log_plan(channel, plan, f"{len(changed)} event(s)")
        channel.mark(plan.unchanged, True, "Applied", "matches what the provider reported")
        await self._execute(channel, plan, changed.__getitem__, outcome)
        return None

    def _refuse_or_hold(
        self, channel: ProviderChannel, event: Event, problems: list[Problem], outcome: _Outcome
    ) -> None:
        """A claim waits (bounded) for the release that may still be coming; anything else is refused now."""
        claims = all(p.rule in _CLAIM_RULES for p in problems)
        now = time.monotonic()
        deadline = channel.held.setdefault(event.target, now + self.settings.claim_wait) if claims else now
        if claims and now < deadline:
            outcome.held.append(event)
            log.info("provider %s: %s waits up to %.0fs for the event that releases what it claims",
                     channel.name, event, deadline - now)  # fmt: skip
            return
        channel.held.pop(event.target, None)
        for problem in problems:
            self._reply(channel, event, _violation(problem))
        outcome.failed = True

    # -- drift repair ----------------------------------------------------------------

    async def repair(self, channel: ProviderChannel) -> None:
        """Reconcile each suspect by name against the provider's latest desired state.

        Echoes of our own writes are recognised and skipped; what someone else changed or
        deleted is put back, unless the object is contested (then it is left alone and marked).
        """
        suspects, channel.suspects = channel.suspects, {}
        desired = channel.desired
        if desired is None or self.settings.dry_run:
            return
        try:
            observed = await self._observe(channel)
            await self._catch_up(observed, suspects)
        except (KubeError, StaleRead, NotLeading):
            channel.suspects = {**suspects, **channel.suspects}  # try again with the next wake-up
            channel.retry_at = time.monotonic() + self.settings.resync_after_failure
            return
        now = time.monotonic()
        restore: dict[str, HyperNode] = {}
        for name, suspect in suspects.items():
            want = desired.get(name)
            current = observed.get(name)
            if suspect.deleted and name in channel.deleted:
                channel.deleted.discard(name)  # the echo of our own delete
                continue
            if suspect.resource_version in channel.written.get(name, ()):
                continue  # the echo of our own write
            if want is None:
                continue  # not wanted (any more): the latest desired state has nothing to restore
            if current is not None and (current.owner != channel.name or matches(want, current, channel.manager)):
                continue  # in sync already, or no longer ours to touch
            if suspect.retry:
                restore[name] = want  # ours to finish, not another foreign change
                continue
            channel.stats.foreign_changes += 1
            times = channel.foreign.setdefault(name, collections.deque(maxlen=self.settings.contest_threshold))
            times.append(now)
            if channel.is_contested(name, now):
                continue
            if len(times) >= self.settings.contest_threshold and now - times[0] <= self.settings.contest_window:
                channel.contested[name] = now + self.settings.contest_hold
                message = (
                    f"{'deleted' if current is None else 'changed'} by another writer {len(times)} times "
                    f"within {self.settings.contest_window:.0f}s; not repaired for "
                    f"{self.settings.contest_hold:.0f}s (does another controller write this source?)"
                )
                channel.mark([name], False, "Contested", message)
                log.warning("provider %s: HyperNode %s is contested: %s", channel.name, name, message)
                continue
            what = "deleted" if current is None else "changed"
            log.warning(
                "provider %s: HyperNode %s was %s by someone else; restoring the provider's latest desired state",
                channel.name,
                name,
                what,
            )
            restore[name] = want
        if not restore:
            return
        owned_now = {n: o.hypernode for n, o in observed.items() if o.owner == channel.name and o.hypernode}
        others = {n for n, o in observed.items() if o.owner != channel.name}
        intent = {**owned_now, **restore}
        plan = plan_changes(channel.name, restore, observed)
        blocked = [*tree_problems(intent), *missing_member_problems(intent, others), *_unordered_problems(plan)]
        if blocked:
            # Putting these back alone would break the tree (the rest of the cluster is not at the desired
            # state either): leave them; the provider's next event or snapshot plans the whole set.
            for problem in blocked:
                log.warning("provider %s: not repaired: %s", channel.name, problem)
            channel.mark(restore, False, "TopologyViolation", f"not repaired: {blocked[0]}")
            return
        channel.stats.repairs += len({op.name for op in plan.operations})
        self._log_plan(channel, plan, f"repair of {len(restore)} HyperNode(s)")
        outcome = _Outcome(quiet=True)  # the provider sent no event for this: there is nothing to reply to
        await self._execute(channel, plan, lambda name: Event.update(restore[name]), outcome)
        if outcome.transient:
            for name in restore:
                channel.suspects.setdefault(name, Suspect(None, deleted=False, retry=True))
            channel.retry_at = time.monotonic() + self.settings.resync_after_failure

    # -- writing ---------------------------------------------------------------------

    async def _execute(
        self, channel: ProviderChannel, plan: Plan, event_of: Callable[[str], Event], outcome: _Outcome
    ) -> bool:
        if self.settings.dry_run:
            return True
        written: dict[str, Observed | None] = {}  # what our own writes of this plan left, by name
        left = collections.Counter(op.name for op in plan.operations)
        channel.writing.update(left)
        channel.planning = False  # from here on, only the names still to be written hold their status back

        async def write(op: Operation) -> bool:
            try:
                return await self._write(channel, op, event_of(op.name), outcome, written)
            finally:
                left[op.name] -= 1
                if not left[op.name]:
                    self._done_writing(channel, [op.name])

        try:
            for wave in plan.waves:
                results = await asyncio.gather(*(write(op) for op in wave))
                if not all(results):
                    # Every wave leaves a strict tree, and later waves build on this one: stop here, retry later.
                    return False
            return True
        finally:
            self._done_writing(channel, [name for name, count in left.items() if count])

    @staticmethod
    def _done_writing(channel: ProviderChannel, names: list[str]) -> None:
        channel.writing.difference_update(names)
        if channel.on_mark is not None and names:
            channel.on_mark(names)  # their status, held back while they were written, is due now

    async def _write(
        self,
        channel: ProviderChannel,
        op: Operation,
        event: Event,
        outcome: _Outcome,
        written: dict[str, Observed | None],
    ) -> bool:
        attempts = 0
        try:
            async for attempt in self.settings.retry.retrying():
                with attempt:
                    attempts += 1
                    await self._write_once(channel, op, written, fresh=attempts > 1)
            if isinstance(op, Delete):
                channel.sync.pop(op.name, None)
            elif not _is_release(op):
                channel.mark([op.name], True, "Applied", "matches what the provider reported")
        except ApplyError as refused:
            self._reply(channel, event, refused, attempts, quiet=outcome.quiet)
            outcome.failed = True
            return False
        except NotLeading:
            outcome.failed = outcome.transient = True  # kept; the next leader starts from the cluster anyway
            return False
        except (KubeError, StaleRead) as exc:
            failure: ApplyError
            if is_retriable(exc):
                outcome.transient = True
                failure = RetriesExhausted(f"{_verb(op)} failed {attempts} times: {exc}", name=op.name)
            else:
                status = exc.status if isinstance(exc, KubeError) else None
                failure = RequestRejected(f"{_verb(op)} refused: {exc}", name=op.name, status=status)
            self._reply(channel, event, failure, attempts, quiet=outcome.quiet)
            outcome.failed = True
            return False
        return True

    async def _write_once(
        self, channel: ProviderChannel, op: Operation, written: dict[str, Observed | None], *, fresh: bool
    ) -> None:
        """One attempt. ``fresh``: re-read first, because the last attempt's view may be stale."""
        if not self.gate():
            raise NotLeading()
        name, provider, stats = op.name, channel.name, channel.stats
        if name in written:
            current: Observed | None = written[name]  # a second write of this plan (the claim after a release)
        else:
            current = None if isinstance(op, Create) else op.observed
        if not fresh and current is not None and self.cache is not None:
            # A version newer than planned from, already in the cache (our status write, most often): what a
            # 409 and a re-read would give, without the two requests.
            held = self.cache.items().get(name)
            if held is not None and newer(held.resource_version, current.resource_version):
                current = held.observed
        if fresh:
            raw = await self.client.get(name)
            if raw is None and current is not None:
                self._forget(name, current.resource_version)
            current = self._record(raw) if raw is not None else None
            others = _other_managers(raw, channel.manager) if raw is not None and isinstance(op, Create) else set()
            if others and current is not None and current.owner == provider and name not in written:
                # A create of ours that came back with someone else's fields: a twin made meanwhile, whose
                # give-back failed last attempt. Never adopt it.
                await self._give_back(channel, name)
                raise OwnershipConflict(f"was created meanwhile by {', '.join(sorted(others))}; left to it", name=name)
        if current is not None and current.owner != provider:
            raise OwnershipConflict(f"now belongs to {describe_owner(current)}; left alone", name=name)
        if fresh and not self.gate():
            raise NotLeading()

        if isinstance(op, Delete):
            if current is None:
                channel.owned.pop(name, None)
                return
            try:
                gone = await self.client.delete(name, current.uid, current.resource_version)
            except KubeError as exc:
                raise _stale_if_conflict(exc) from exc
            self._forget(name, current.resource_version)
            if gone:
                channel.deleted.add(name)
            stats.writes["delete"] += gone
            channel.owned.pop(name, None)
            written[name] = None
            return

        desired = op.hypernode
        if current is None:
            # Created by server-side apply too, so every field stays ours to remove later. Not forced:
            # if someone created the name meanwhile with other values, this is a 409 and we look again.
            body = desired.to_dict()
            try:
                applied = await self.client.apply(body, channel.manager, force=False, create=True)
            except KubeError as exc:
                raise _stale_if_conflict(exc) from exc
            self._record(applied, (desired, body.get("spec")))
            others = _other_managers(applied, channel.manager)
            if others:
                # Someone created it meanwhile with exactly our values, so the apply did not conflict:
                # still not ours. Give back every field only we set (our labels), then say so.
                await self._give_back(channel, name)
                raise OwnershipConflict(f"was created meanwhile by {', '.join(sorted(others))}; left to it", name=name)
            stats.writes["create"] += 1
        elif not matches(desired, current, channel.manager):
            body = desired.to_dict()
            body["metadata"]["resourceVersion"] = current.resource_version  # apply only onto what we checked
            created_in = current.annotations.get(fence.TERM_ANNOTATION)
            if created_in is not None:  # kept as created: left out, the apply would remove it
                body["metadata"].setdefault("annotations", {})[fence.TERM_ANNOTATION] = created_in
            try:
                # Forced: the object is ours (labels checked at this resourceVersion); take back drifted fields.
                applied = await self.client.apply(body, channel.manager, force=True)
            except KubeError as exc:
                raise _stale_if_conflict(exc) from exc
            stats.writes["update"] += 1
        else:
            written[name] = current
            if not _is_release(op):
                channel.owned[name] = desired
            return
        version = str((applied.get("metadata") or {}).get("resourceVersion", ""))
        channel.wrote(name, version)
        channel.deleted.discard(name)
        written[name] = self._record(applied, (desired, body.get("spec")))
        if not _is_release(op):
            channel.owned[name] = desired

    async def _give_back(self, channel: ProviderChannel, name: str) -> None:
        """Apply nothing under our manager: the fields only we set (our labels) are removed again."""
        channel.disowned.add(name)
        async for attempt in self.settings.retry.retrying():
            with attempt:
                self._record(await self.client.apply(_empty_apply(name), channel.manager, force=False))
        channel.disowned.discard(name)

    async def _settle_disowned(self, channel: ProviderChannel) -> None:
        """Try again to give back what a failed give-back left labelled as ours (once per batch)."""
        for name in sorted(channel.disowned):
            with contextlib.suppress(KubeError):
                self._record(await self.client.apply(_empty_apply(name), channel.manager, force=False))
                channel.disowned.discard(name)

    # -- helpers ---------------------------------------------------------------------

    def _prepare(self, channel: ProviderChannel, hypernode: HyperNode) -> tuple[HyperNode | None, list[Problem]]:
        """Post-process, force ownership labels, and validate the object exactly as it will be written."""
        if channel.transform is not None:
            try:
                hypernode = channel.transform(hypernode)
            except Exception as exc:
                return None, [Problem("(post-process)", "post-process hook", f"raised {exc!r}", "schema")]
            if not isinstance(hypernode, HyperNode):
                return None, [Problem("(post-process)", "post-process hook", "did not return a HyperNode", "schema")]
        try:
            owned = with_ownership(hypernode, channel.name)
        except ValidationError:
            # pydantic validates on construction only: a field the provider assigned afterwards was never checked.
            verdict = check_document(hypernode.to_dict(), admission=self.settings.admission)
            return None, verdict.problems or [
                Problem("metadata", "schema", "the object's metadata is not valid", "schema")
            ]
        accepted = (channel.desired or {}).get(owned.metadata.name or "")
        # Compared only when not the very same members: a provider changing what it sent in place would make
        # the comparison with itself meaningless (that object is validated again instead).
        if accepted is not None and accepted.spec is not owned.spec and accepted == owned:
            return accepted, []  # what was validated last time, unchanged: comparing is ~8x cheaper than checking
        held = self.cache.items().get(owned.metadata.name or "") if self.cache is not None else None
        cached = held.observed.hypernode if held is not None else None
        if cached is not None and cached.spec is not owned.spec and cached == owned:
            # Exactly what the cluster holds (validated when it was read): shared, not a second copy in memory.
            return cached, []
        verdict = check_document(owned.to_dict(), admission=self.settings.admission)
        if not verdict.ok:
            return None, verdict.problems
        # The provider's own object when validating it changed nothing: its members are not held twice.
        return (owned if verdict.hypernode == owned else verdict.hypernode), verdict.problems

    async def _observe(self, channel: ProviderChannel | None = None) -> dict[str, Observed]:
        """The cluster's HyperNodes; with ``channel``, its disowned objects count as someone else's."""
        if self.cache is not None:
            observed = await self._cached()
        else:
            async for attempt in self.settings.retry.retrying():
                with attempt:
                    items = await self.client.list()
            observed = {o.name: o for o in map(self._parse, items)}
            for name in [n for n in self._parsed if n not in observed]:
                del self._parsed[name]
        for name in channel.disowned if channel is not None else ():
            current = observed.get(name)
            if current is not None and current.owner == channel.name:  # type: ignore[union-attr]
                observed[name] = dataclasses.replace(current, owner=None)
        return observed

    def close(self) -> None:
        """Its request threads and its planning thread end once idle (a replaced writer)."""
        self.client.close()
        if self._planner is not None:
            self._planner.shutdown(wait=False)

    async def _off_loop(self, work: Callable[[], T]) -> T:
        """Pure work over a whole snapshot (seconds at 65k nodes) on the writer's own thread: the event loop
        keeps renewing the leader's lease and serving probes meanwhile. Its inputs are copies no one changes."""
        if self._planner is None:
            self._planner = ThreadPoolExecutor(1, thread_name_prefix="writer-plan")
        return await asyncio.get_running_loop().run_in_executor(self._planner, work)

    async def _cached(self) -> dict[str, Observed]:
        """The watch-fed view, once it has listed: planning from a view that has not is planning from nothing."""
        assert self.cache is not None
        if not self.cache.synced():
            if self.cache.errors:  # it tried and failed: the batch is kept and retried, not held up here
                raise StaleRead(f"the HyperNode watch could not list the cluster yet ({self.cache.errors} failures)")
            try:
                await asyncio.wait_for(self.cache.wait_synced(), self.settings.retry.deadline)
            except TimeoutError:
                raise StaleRead("the HyperNode watch has not listed the cluster yet") from None
        return self.cache.observed()

    async def _catch_up(self, observed: dict[str, Observed], suspects: Mapping[str, Suspect]) -> None:
        """Read again the suspects the cache has not caught up with (a change reported before the watch saw it)."""
        if self.cache is None:
            return  # just listed
        for name, suspect in suspects.items():
            held = observed.get(name)
            behind = (suspect.deleted and held is not None) or (
                suspect.resource_version is not None
                and (held is None or newer(suspect.resource_version, held.resource_version))
            )
            if not behind:
                continue
            raw = await self.client.get(name)
            if raw is None:
                if held is not None:
                    self._forget(name, held.resource_version)
                observed.pop(name, None)
            else:
                observed[name] = self._record(raw)

    def _record(self, obj: Mapping[str, Any], sent: tuple[HyperNode, Any] | None = None) -> Observed:
        """An object the API server just answered with, parsed; the cache (if any) keeps it too."""
        return self.cache.record(obj, sent).observed if self.cache is not None else Observed.from_dict(obj, None, sent)

    def _forget(self, name: str, resource_version: str) -> None:
        if self.cache is not None:
            self.cache.forget(name, resource_version)

    def _parse(self, item: dict[str, Any]) -> Observed:
        metadata = item.get("metadata") or {}
        name, version = metadata.get("name", ""), metadata.get("resourceVersion", "")
        cached = self._parsed.get(name)
        if cached is None or cached[0] != version or not version:
            cached = self._parsed[name] = (version, Observed.from_dict(item))
        return cached[1]

    def _keep(self, channel: ProviderChannel, events: list[Event], *, retry: bool) -> None:
        """Keep ``events`` for the next batch; a claim stays held only while its event is still kept."""
        channel.retained = events
        names = {e.target for e in events}
        channel.held = {name: deadline for name, deadline in channel.held.items() if name in names}
        channel.retry_at = time.monotonic() + self.settings.resync_after_failure if retry else None

    def _give_up(self, channel: ProviderChannel, batch: Batch, exc: Exception) -> None:
        self._keep(channel, batch.kept(), retry=True)
        for event in [batch.snapshot, *batch.singles]:
            if event is not None:
                self._reply(channel, event, RetriesExhausted(f"could not read the cluster's HyperNodes: {exc}"))

    def _reply(
        self,
        channel: ProviderChannel,
        event: Event | None,
        error: ApplyError,
        attempts: int = 0,
        *,
        quiet: bool = False,
    ) -> None:
        channel.stats.failures[error.reason] += 1
        if error.name:
            channel.mark([error.name], False, error.reason, str(error))
        if quiet:
            log.warning("provider %s: %s", channel.name, error)
            return
        log.warning("provider %s: %s: %s", channel.name, event if event is not None else "malformed event", error)
        for problem in error.problems:
            log.warning("provider %s:   %s", channel.name, problem)
        reply = Reply(event, error, attempts)
        try:
            channel.replies.put_nowait(reply)
        except asyncio.QueueFull:
            # A provider that does not read its replies must not stall the writer: drop the oldest.
            channel.replies.get_nowait()
            channel.replies.put_nowait(reply)
            channel.stats.replies_dropped += 1

    def _log_plan(self, channel: ProviderChannel, plan: Plan, what: str) -> None:
        counts = plan.counts()
        if plan.unordered:
            # The observed or desired state already breaks the tree rules, so no safe order exists.
            log.warning("provider %s: %s: no order keeps the tree strict for %s; written in tree order",
                        channel.name, what, ", ".join(sorted(plan.unordered)))  # fmt: skip
        if self.settings.dry_run:
            for op in plan.operations:
                log.warning("provider %s: dry run: would %s HyperNode %s", channel.name, _verb(op), op.name)
        log.info("provider %s: %s: %s", channel.name, what, ", ".join(f"{k} {v}" for k, v in counts.items()))


@dataclass
class _Outcome:
    failed: bool = False
    transient: bool = False
    held: list[Event] = field(default_factory=list)  # claims waiting for their release
    quiet: bool = False  # failures are marked and counted but not replied (repairs: no provider event)

    @property
    def ok(self) -> bool:
        return not self.failed


# Tree rules broken by a claim that a release still on its way would make right.
_CLAIM_RULES = frozenset({"node in one leaf", "one parent"})


def _unordered_problems(plan: Plan) -> list[Problem]:
    """Writes no order can make safe from the cluster as it is: refused, never written in a risky order."""
    return [
        Problem("spec.members", "safe order", "no order of writes keeps the tree strict at every moment from "
                "what the cluster holds now", "topology", name)
        for name in plan.unordered
    ]  # fmt: skip


def _other_managers(applied: Mapping[str, Any], manager: str) -> set[str]:
    """Managers of the object's main resource besides ``manager`` (status writers do not count)."""
    entries = (applied.get("metadata") or {}).get("managedFields") or []
    return {str(e.get("manager")) for e in entries if e.get("manager") != manager and e.get("subresource") != "status"}


def _empty_apply(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HyperNode", "metadata": {"name": name}}


def _stale_if_conflict(exc: KubeError) -> Exception:
    """409 means what we read has changed: re-read and decide again (retriable). So does a create the writer
    fence refused: sent in a term the server no longer has (a new leader's, when the server's view of the Lease
    lags by a moment, passes on the next attempt; a deposed one's stops at the gate). Anything else stands."""
    return StaleRead(str(exc)) if exc.status == 409 or fence.is_fenced(exc.status, exc.message) else exc


def _is_release(op: Operation) -> bool:
    """The first of two writes of one object: only giving members up (see plan.py)."""
    return isinstance(op, Update) and op.release


def _verb(op: Operation) -> str:
    if _is_release(op):
        return "release"
    return {Create: "create", Delete: "delete"}.get(type(op), "update")


def _invalid(name: str, problems: list[Problem]) -> InvalidHyperNode:
    summary = "; ".join(f"{p.path}: {p.message} [{p.rule}]" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return InvalidHyperNode(f"{summary}{more}", name=name, problems=problems)


def _violation(problem: Problem) -> TopologyViolation:
    return TopologyViolation(
        f"{problem.path}: {problem.message} [{problem.rule}]", name=problem.name, problems=[problem]
    )
