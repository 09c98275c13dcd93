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
- When transient failures outlast the retry budget, the batch is kept and tried again
  after ``resync_after_failure`` unless newer events arrive first (they are coalesced
  with it), so an API-server outage longer than the budget still converges.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from volcano_topology import ownership
from volcano_topology.api import HyperNode
from volcano_topology.kube import HyperNodeClient, KubeError
from volcano_topology.plan import (
    Create,
    Delete,
    DeletionGuard,
    Observed,
    Operation,
    Plan,
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
from volcano_topology.tree import tree_problems
from volcano_topology.validation import check_document

log = logging.getLogger(__name__)

Transform = Callable[[HyperNode], HyperNode]


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
    apply_seconds: float = 0.0


@dataclass
class ProviderChannel:
    """One provider's side of the writer: its queues, its numbers, what it owns."""

    name: str
    events: asyncio.Queue[Event]
    replies: asyncio.Queue[Reply]
    stats: ProviderStats = field(default_factory=ProviderStats)
    transform: Transform | None = None
    owned: dict[str, HyperNode] = field(default_factory=dict)
    retained: list[Any] = field(default_factory=list)
    # Set while the writer waits for events with nothing left to apply or retry.
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # Per HyperNode: is it what this provider last asked for? (the Synced condition)
    sync: dict[str, SyncState] = field(default_factory=dict)

    def mark(self, names: Iterable[str], synced: bool, reason: str, message: str) -> None:
        for name in names:
            self.sync[name] = SyncState(synced, reason, message)

    @property
    def manager(self) -> str:
        return ownership.field_manager(self.name)


@dataclass
class Batch:
    snapshot: Event | None = None
    singles: list[Event] = field(default_factory=list)
    malformed: list[tuple[Any, str]] = field(default_factory=list)
    superseded: int = 0


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
    if event.type in (EventType.CREATE, EventType.UPDATE):
        if not isinstance(event.hypernode, HyperNode):
            return f"{event.type} needs a HyperNode, got {type(event.hypernode).__name__}"
        if not event.hypernode.metadata.name:
            return f"{event.type} of a HyperNode without metadata.name"
    elif event.type is EventType.DELETE:
        if not isinstance(event.name, str) or not event.name:
            return "DELETE needs the name of a HyperNode"
    elif event.type is EventType.SNAPSHOT:
        if not all(isinstance(h, HyperNode) for h in event.hypernodes):
            return "SNAPSHOT must hold HyperNode objects only"
    else:
        return f"unknown event type {event.type!r}"
    return None


class NotLeading(Exception):
    """This replica may not write now (it is not, or no longer surely, the leader)."""


class Writer:
    def __init__(
        self, client: HyperNodeClient, settings: WriterSettings | None = None, gate: Callable[[], bool] | None = None
    ) -> None:
        self.client = client
        self.settings = settings or WriterSettings()
        self.channels: dict[str, ProviderChannel] = {}
        # Checked before every write: the fence that keeps a deposed leader from writing.
        self.gate = gate or (lambda: True)

    def open(self, provider: str, transform: Transform | None = None) -> ProviderChannel:
        channel = ProviderChannel(
            provider,
            asyncio.Queue(self.settings.queue_size),
            asyncio.Queue(self.settings.reply_queue_size),
            transform=transform,
        )
        self.channels[provider] = channel
        return channel

    async def run(self, channel: ProviderChannel) -> None:
        """Consume ``channel`` until cancelled."""
        while True:
            if channel.events.empty() and not channel.retained:
                channel.idle.set()
            batch = await self._next_batch(channel)
            channel.idle.clear()
            await self.process(channel, batch)

    async def _next_batch(self, channel: ProviderChannel) -> list[Any]:
        if channel.retained:
            try:
                first = await asyncio.wait_for(channel.events.get(), self.settings.resync_after_failure)
            except TimeoutError:
                batch, channel.retained = channel.retained, []
                return batch
            batch, channel.retained = [*channel.retained, first], []
        else:
            batch = [await channel.events.get()]
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
        for event in events:
            stats.events[event.type.value if isinstance(event, Event) else "malformed"] += 1
        batch = coalesce(events)
        stats.superseded += batch.superseded
        for raw, why in batch.malformed:
            self._reply(channel, raw if isinstance(raw, Event) else None, MalformedEvent(f"{why}: {raw!r:.200}"))
        try:
            observed = await self._observe()
        except (KubeError, StaleRead) as exc:
            self._give_up(channel, events, batch, exc)
            return False
        outcome = _Outcome()
        if batch.snapshot is not None:
            await self._apply_snapshot(channel, batch.snapshot, observed, outcome)
        if batch.singles:
            try:
                if batch.snapshot is not None:
                    observed = await self._observe()  # the snapshot changed what the events apply to
                await self._apply_singles(channel, batch.singles, observed, outcome)
            except (KubeError, StaleRead):
                outcome.failed = outcome.transient = True
        if outcome.transient:
            channel.retained = list(events)
        stats.apply_seconds += time.monotonic() - started
        stats.batches += 1
        if outcome.ok:
            stats.last_sync = time.time()
        return outcome.ok

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
        if not errors:
            errors = [_violation(p) for p in tree_problems(desired)]
        owned = {name for name, o in observed.items() if o.owner == channel.name}
        plan = plan_changes(channel.name, desired, observed, delete=owned - set(desired)) if not errors else Plan()
        errors.extend(
            OwnershipConflict(f"already exists and belongs to {c.owner}", name=c.name) for c in plan.conflicts
        )
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
        self._log_plan(channel, plan, str(event))
        channel.mark(plan.unchanged, True, "Applied", "matches what the provider reported")
        if await self._execute(channel, plan, lambda _name: event, outcome):
            channel.owned = desired

    # -- single events ---------------------------------------------------------------

    async def _apply_singles(
        self, channel: ProviderChannel, events: list[Event], observed: Mapping[str, Observed], outcome: _Outcome
    ) -> None:
        base = {n: o.hypernode for n, o in observed.items() if o.owner == channel.name and o.hypernode is not None}
        intent = dict(base)
        changed: dict[str, Event] = {}
        for event in events:
            name = event.target
            if event.type is EventType.DELETE:
                intent.pop(name, None)
                changed[name] = event
                continue
            assert event.hypernode is not None
            valid, problems = self._prepare(channel, event.hypernode)
            if valid is None:
                self._reply(channel, event, _invalid(name, problems))
                outcome.failed = True
            else:
                intent[name] = valid
                changed[name] = event
        violations = tree_problems(intent)
        if violations and len(changed) > 1:
            # Find the offenders: each event alone, against the cluster as the events before it left it.
            for event in changed.values():
                try:
                    observed = await self._observe()
                except (KubeError, StaleRead):
                    outcome.failed = outcome.transient = True  # a stale view could let two claims through: retry
                    return
                await self._apply_singles(channel, [event], observed, outcome)
            return
        if violations:
            event = next(iter(changed.values()))
            for problem in violations:
                self._reply(channel, event, _violation(problem))
            outcome.failed = True
            return
        if not changed:
            return
        deleted = [n for n, e in changed.items() if e.type is EventType.DELETE]
        plan = plan_changes(channel.name, {n: intent[n] for n in changed if n in intent}, observed, delete=deleted)
        for conflict in plan.conflicts:
            self._reply(
                channel, changed[conflict.name],
                OwnershipConflict(f"already exists and belongs to {conflict.owner}", name=conflict.name),
            )  # fmt: skip
            outcome.failed = True
        for name in deleted:
            current = observed.get(name)
            if current is not None and current.owner != channel.name:
                self._reply(
                    channel, changed[name],
                    OwnershipConflict(f"not deleted: it belongs to {describe_owner(current)}", name=name),
                )  # fmt: skip
                outcome.failed = True
        self._log_plan(channel, plan, f"{len(changed)} event(s)")
        channel.mark(plan.unchanged, True, "Applied", "matches what the provider reported")
        await self._execute(channel, plan, changed.__getitem__, outcome)

    # -- writing ---------------------------------------------------------------------

    async def _execute(
        self, channel: ProviderChannel, plan: Plan, event_of: Callable[[str], Event], outcome: _Outcome
    ) -> bool:
        if self.settings.dry_run:
            return True
        for wave in plan.waves:
            results = await asyncio.gather(*(self._write(channel, op, event_of(op.name), outcome) for op in wave))
            if not all(results):
                # Later waves build on this one (parents on children, deletes on parent updates): stop here.
                return False
        return True

    async def _write(self, channel: ProviderChannel, op: Operation, event: Event, outcome: _Outcome) -> bool:
        attempts = 0
        try:
            async for attempt in self.settings.retry.retrying():
                with attempt:
                    attempts += 1
                    await self._write_once(channel, op, fresh=attempts > 1)
            if isinstance(op, Delete):
                channel.sync.pop(op.name, None)
            else:
                channel.mark([op.name], True, "Applied", "matches what the provider reported")
        except ApplyError as refused:
            self._reply(channel, event, refused, attempts)
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
            self._reply(channel, event, failure, attempts)
            outcome.failed = True
            return False
        return True

    async def _write_once(self, channel: ProviderChannel, op: Operation, *, fresh: bool) -> None:
        """One attempt. ``fresh``: re-read first, because the last attempt's view may be stale."""
        if not self.gate():
            raise NotLeading()
        name, provider, stats = op.name, channel.name, channel.stats
        current: Observed | None = None if isinstance(op, Create) else op.observed
        if fresh:
            raw = await self.client.get(name)
            current = Observed.from_dict(raw) if raw is not None else None
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
            stats.writes["delete"] += gone
            channel.owned.pop(name, None)
            return

        desired = op.hypernode
        if current is None:
            # Created by server-side apply too, so every field stays ours to remove later. Not forced:
            # if someone created the name meanwhile with other values, this is a 409 and we look again.
            try:
                await self.client.apply(desired.to_dict(), channel.manager, force=False)
            except KubeError as exc:
                raise _stale_if_conflict(exc) from exc
            stats.writes["create"] += 1
        elif not matches(desired, current, channel.manager):
            body = desired.to_dict()
            body["metadata"]["resourceVersion"] = current.resource_version  # apply only onto what we checked
            try:
                # Forced: the object is ours (labels checked at this resourceVersion); take back drifted fields.
                await self.client.apply(body, channel.manager, force=True)
            except KubeError as exc:
                raise _stale_if_conflict(exc) from exc
            stats.writes["update"] += 1
        channel.owned[name] = desired

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
        owned = with_ownership(hypernode, channel.name)
        verdict = check_document(owned.to_dict(), admission=self.settings.admission)
        return (verdict.hypernode if verdict.ok else None), verdict.problems

    async def _observe(self) -> dict[str, Observed]:
        async for attempt in self.settings.retry.retrying():
            with attempt:
                items = await self.client.list()
        return {o.name: o for o in map(Observed.from_dict, items)}

    def _give_up(self, channel: ProviderChannel, events: Sequence[Any], batch: Batch, exc: Exception) -> None:
        channel.retained = list(events)
        for event in [batch.snapshot, *batch.singles]:
            if event is not None:
                self._reply(channel, event, RetriesExhausted(f"could not read the cluster's HyperNodes: {exc}"))

    def _reply(self, channel: ProviderChannel, event: Event | None, error: ApplyError, attempts: int = 0) -> None:
        channel.stats.failures[error.reason] += 1
        if error.name:
            channel.mark([error.name], False, error.reason, str(error))
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
        if self.settings.dry_run:
            for op in plan.operations:
                log.warning("provider %s: dry run: would %s HyperNode %s", channel.name, _verb(op), op.name)
        log.info("provider %s: %s: %s", channel.name, what, ", ".join(f"{k} {v}" for k, v in counts.items()))


@dataclass
class _Outcome:
    failed: bool = False
    transient: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def _stale_if_conflict(exc: KubeError) -> Exception:
    """409 means what we read has changed: re-read and decide again (retriable). Anything else stands."""
    return StaleRead(str(exc)) if exc.status == 409 else exc


def _verb(op: Operation) -> str:
    return {Create: "create", Delete: "delete"}.get(type(op), "update")


def _invalid(name: str, problems: list[Problem]) -> InvalidHyperNode:
    summary = "; ".join(f"{p.path}: {p.message} [{p.rule}]" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return InvalidHyperNode(f"{summary}{more}", name=name, problems=problems)


def _violation(problem: Problem) -> TopologyViolation:
    return TopologyViolation(
        f"{problem.path}: {problem.message} [{problem.rule}]", name=problem.name, problems=[problem]
    )
