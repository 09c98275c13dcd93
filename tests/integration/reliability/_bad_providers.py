"""Misbehaving providers for the provider-fault scenarios (issue 13, item 3), installed for a real operator process.

:func:`bad_provider_dir` lays this module out as ``pip install --target`` would (the module plus a
dist-info whose entry points, group ``volcano_topology.providers``, name each class below), for
``--provider-path``. Every provider appends JSON lines to the file named by its ``record`` setting:
``{"kind": "start"}`` at each start, ``{"kind": "reply", ...}`` for each reply the operator sent
it (read from its own reply queue), and its own figures (``sent`` for the flood). The test reads
that file from outside the operator process.

- ``raise-at-start``: raises in ``start()`` every time.
- ``raise-later``: sends a valid snapshot, waits until it is applied (its owned view), then raises
  mid-run; restarted, it does it again.
- ``hang-async``: never sends anything and never returns; with ``swallowCancel`` it also ignores
  ``ctx.stopping`` and swallows cancellation (a hostile provider).
- ``hang-scan``: a ScanningProvider whose blocking ``scan()`` never returns (blocks its thread).
- ``hang-executor``: pins every worker of asyncio's default executor with calls that never return.
- ``flood``: UPDATE/CREATE events for a few names as fast as the bounded queue takes them, then a final
  known version of each name.
- ``garbage``: things that are not Events, malformed Events, invalid HyperNodes, snapshots that break the
  rules, a raising and a lying post-process hook, bad gauges; then one valid sentinel.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from volcano_topology.api import HyperNode
from volcano_topology.provider import Event, EventType, Provider, ProviderContext, Reply
from volcano_topology.sdk import ScanningProvider

MODULE = "vt_bad_providers"
ENTRY_POINTS = {
    "raise-at-start": "RaisingAtStart",
    "raise-later": "RaisingLater",
    "hang-async": "HangingAsync",
    "hang-scan": "HangingScan",
    "hang-executor": "HangingExecutor",
    "flood": "Flooding",
    "garbage": "Garbage",
}
FLOOD_LABEL = "reliability.test/flood"
FINAL = "final"


def bad_provider_dir(target: Path) -> Path:
    """This module and a dist-info naming its providers, as ``pip install --target`` lays them out."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__), target / f"{MODULE}.py")
    dist = target / "vt_bad_providers-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vt-bad-providers\nVersion: 0.1\n")
    lines = ["[volcano_topology.providers]", *(f"{n} = {MODULE}:{c}" for n, c in ENTRY_POINTS.items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return target


def read_record(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def leaf(name: str, *nodes: str, labels: Mapping[str, str] | None = None) -> HyperNode:
    return HyperNode.model_validate({
        "metadata": {"name": name, **({"labels": dict(labels)} if labels else {})},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": n}}} for n in nodes]},
    })  # fmt: skip


def flood_version(index: int, version: str) -> HyperNode:
    """The flood's object ``flood-<index>`` in one version (a label), always the same node."""
    return leaf(f"flood-{index}", f"flood-node-{index}", labels={FLOOD_LABEL: version})


class BadSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    record: str
    names: int = 4  # objects of raise-later and flood
    events: int = 0  # flood: events to send before the final versions
    gate: str | None = None  # flood: wait until this file exists before sending
    swallow_cancel: bool = False  # hang-async: ignore stopping and swallow cancellation
    threads: int = 64  # hang-executor: calls pinned on the default executor
    reply_wait: float = 30.0  # garbage: how long each phase waits for its replies
    poison: bool = False  # garbage: send objects whose metadata was changed without validation instead


def _write(path: str, **line: Any) -> None:
    with Path(path).open("a") as out:  # a test's small record file
        out.write(json.dumps(line, sort_keys=True) + "\n")


def _describe(event: Event | None) -> str | None:
    if event is None:
        return None
    try:
        return str(event)
    except Exception as exc:  # a malformed Event (a dict for its HyperNode) may not even print
        return f"(unprintable event: {type(exc).__name__})"


def _reply_line(reply: Reply) -> dict[str, Any]:
    error = reply.error
    return {
        "event": _describe(reply.event),
        "reason": error.reason,
        "name": error.name,
        "message": str(error),
        "rules": [p.rule for p in error.problems],
        "paths": [p.path for p in error.problems],
        "attempts": reply.attempts,
    }


async def _record_replies(replies: asyncio.Queue[Reply], record: str) -> None:
    while True:
        reply = await replies.get()
        _write(record, kind="reply", **_reply_line(reply))


class _Recording(Provider):
    settings_model = BadSettings
    settings: BadSettings

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        _write(self.settings.record, kind="start", at=time.time())
        reader = asyncio.create_task(_record_replies(replies, self.settings.record))
        try:
            await self.run(events, ctx)
        finally:
            reader.cancel()

    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        raise NotImplementedError


class RaisingAtStart(_Recording):
    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        raise RuntimeError("raise-at-start: the vendor SDK failed to initialise")


class RaisingLater(_Recording):
    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        wanted = [leaf(f"later-{i}", f"later-node-{i}") for i in range(self.settings.names)]
        await events.put(Event.snapshot(wanted))
        names = {h.name for h in wanted}
        while set(ctx.cluster.owned_hypernodes()) != names:  # noqa: ASYNC110 - the view has no event to wait on
            await asyncio.sleep(0.05)
        _write(self.settings.record, kind="applied")
        await asyncio.sleep(0.2)
        raise RuntimeError("raise-later: the vendor connection broke mid-run")


class HangingAsync(_Recording):
    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        while True:
            try:
                await asyncio.get_running_loop().create_future()  # never done, stopping or not
            except asyncio.CancelledError:
                if not self.settings.swallow_cancel:
                    raise
                _write(self.settings.record, kind="swallowed-cancel")


class HangingScan(ScanningProvider):
    settings_model = BadSettings
    settings: BadSettings
    interval = 0.3
    initial_backoff = 0.2
    scan_timeout = 0.5

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        _write(self.settings.record, kind="start", at=time.time())
        await super().start(events, replies, ctx)

    def scan(self) -> list[HyperNode]:
        _write(self.settings.record, kind="scan-thread", thread=threading.current_thread().name)
        threading.Event().wait()  # a vendor call that never returns: this thread is pinned for ever
        raise AssertionError("unreachable")


class HangingExecutor(_Recording):
    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        loop = asyncio.get_running_loop()
        never = threading.Event()
        pinned = [loop.run_in_executor(None, never.wait) for _ in range(self.settings.threads)]
        _write(self.settings.record, kind="pinned", calls=len(pinned))
        await asyncio.gather(*pinned)


class Flooding(_Recording):
    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        names = self.settings.names
        versions = [[flood_version(i, str(v)) for v in range(2)] for i in range(names)]
        final = [flood_version(i, FINAL) for i in range(names)]
        while self.settings.gate is not None and not Path(self.settings.gate).exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.1)
        started = time.monotonic()
        sent = 0
        for k in range(self.settings.events):
            i = k % names
            hypernode = versions[i][(k // names) % 2]
            await events.put(Event.create(hypernode) if k % 3 == 0 else Event.update(hypernode))
            sent += 1
        for hypernode in final:
            await events.put(Event.update(hypernode))
            sent += 1
        _write(self.settings.record, kind="sent", events=sent, seconds=round(time.monotonic() - started, 2))
        await ctx.stopping.wait()


def _constructed(hypernode: HyperNode, spec: dict[str, Any]) -> HyperNode:
    """A HyperNode whose spec was changed without validation (as a buggy provider could make one)."""
    assert hypernode.spec is not None
    return hypernode.model_copy(update={"spec": hypernode.spec.model_copy(update=spec)})


# What the garbage provider sends, phase by phase (a SNAPSHOT supersedes what was queued before it, so
# each snapshot waits for its replies before the next phase), and the reply each item must get:
# (reason, name or None, a word of the rule or message).
def garbage_items() -> list[tuple[str, list[Any], list[tuple[str, str | None, str]]]]:
    good = leaf("garbage-snap-ok", "garbage-node-0")
    regex = HyperNode.model_validate({
        "metadata": {"name": "garbage-bad-regex"},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"regexMatch": {"pattern": "gpu-(["}}}]},
    })  # fmt: skip
    no_members = HyperNode.model_validate({"metadata": {"name": "garbage-no-members"}, "spec": {"tier": 1}})
    wrong_tier = _constructed(leaf("garbage-tier-type", "garbage-node-2"), {"tier": "one"})
    two_leaves = [leaf("garbage-tv-a", "garbage-node-9"), leaf("garbage-tv-b", "garbage-node-9")]
    return [
        ("snapshot with one invalid object", [Event.snapshot([good, regex])],
         [("Invalid", "garbage-bad-regex", "regex")]),
        ("snapshot breaking the strict tree", [Event.snapshot([*two_leaves])],
         [("TopologyViolation", None, "")]),
        ("singles", [
            "not an event", 42, None,
            Event("CREATE", hypernode=leaf("garbage-str-type", "garbage-node-3")),  # type: ignore[arg-type]
            Event(EventType.CREATE, hypernode={"metadata": {"name": "garbage-dict"}}),  # type: ignore[arg-type]
            Event(EventType.DELETE, name=None),
            Event(EventType.SNAPSHOT, hypernodes=("garbage-string",)),  # type: ignore[arg-type]
            Event.create(regex),
            Event.create(no_members),
            Event.create(wrong_tier),
            Event.create(leaf("garbage-pp-raise", "garbage-node-4")),
            Event.create(leaf("garbage-pp-wrong", "garbage-node-5")),
        ], [
            ("MalformedEvent", None, "got str"),
            ("MalformedEvent", None, "got int"),
            ("MalformedEvent", None, "got NoneType"),
            ("MalformedEvent", None, "event type must be an EventType"),
            ("MalformedEvent", None, "needs a HyperNode, got dict"),
            ("MalformedEvent", None, "DELETE needs the name"),
            ("MalformedEvent", None, "SNAPSHOT must hold HyperNode objects only"),
            ("Invalid", "garbage-bad-regex", "regex"),
            ("Invalid", "garbage-no-members", "members required"),
            ("Invalid", "garbage-tier-type", "spec.tier"),
            ("Invalid", "garbage-pp-raise", "post-process hook"),
            ("Invalid", "garbage-pp-wrong", "post-process hook"),
        ]),
    ]  # fmt: skip


def poison_items() -> list[tuple[str, list[Any], list[tuple[str, str | None, str]]]]:
    """HyperNodes whose metadata a provider changed by plain assignment: pydantic does not validate that."""
    upper = leaf("garbage-upper", "garbage-node-6")
    upper.metadata.name = "Garbage_Upper"
    labelled = leaf("garbage-bad-label", "garbage-node-7")
    labelled.metadata.labels = {"not a label key": "x"}
    return [
        ("unvalidated metadata", [Event.create(upper), Event.create(labelled)], [
            ("Invalid", "Garbage_Upper", "metadata.name"),
            ("Invalid", "garbage-bad-label", "labels"),
        ]),
    ]  # fmt: skip


SENTINEL = "garbage-sentinel"


class Garbage(_Recording):
    async def run(self, events: asyncio.Queue[Event], ctx: ProviderContext) -> None:
        record = Path(self.settings.record)
        for phase, items, expected in poison_items() if self.settings.poison else garbage_items():
            before = sum(1 for r in read_record(record) if r["kind"] == "reply")
            for item in items:
                await events.put(item)
            _write(self.settings.record, kind="phase", phase=phase, items=len(items))
            deadline = time.monotonic() + self.settings.reply_wait
            while sum(1 for r in read_record(record) if r["kind"] == "reply") < before + len(expected):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        await events.put(Event.create(leaf(SENTINEL, "garbage-node-sentinel")))
        _write(self.settings.record, kind="sent-sentinel")
        await ctx.stopping.wait()

    def post_process(self, hypernode: HyperNode) -> HyperNode:
        if hypernode.name == "garbage-pp-raise":
            raise ValueError("post-process hook bug")
        if hypernode.name == "garbage-pp-wrong":
            return {"not": "a HyperNode"}  # type: ignore[return-value]
        return hypernode

    def gauges(self) -> Mapping[str, float]:
        return {"Not A Name": 1.0, "not_a_number": "many", "garbage_ok": 3.0}  # type: ignore[dict-item]
