"""The long soak's parts: the fabric script, the LIST check, the process sampler, the strict-tree watch.

Kept apart from test_soak.py so each part reads on its own; nothing here starts an operator.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, watch
from volcano_topology_emulated.provider import MODELS

from bench import fabrics
from bench.measure import Wanted
from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.tree import moment_problems

MiB = 1024

# -- the fabric and its script ----------------------------------------------------------------------


def shipped_model(name: str) -> dict[str, Any]:
    """One of the emulated provider's shipped models (medium-1024, large-16384) as a plain mapping."""
    model: dict[str, Any] = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    assert not model.get("changes") and not model.get("faults"), f"{name}: the soak scripts its own changes"
    return model


def rewire_leaf(model: dict[str, Any], index: int) -> dict[str, Any]:
    """The ``index``-th leaf re-cabled to the next spine (its old spine loses a child, the new one gains it)."""
    out = copy.deepcopy(model)
    found = fabrics.leaves(out)
    spines = sorted({p for leaf in found for p in leaf.get("parents", [])})
    leaf = found[index % len(found)]
    now = leaf.get("parents", [spines[0]])[0]
    leaf["parents"] = [spines[(spines.index(now) + 1) % len(spines)]]
    return out


def next_model(step: int, current: dict[str, Any], base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The scripted change number ``step``: a cycle of 10 that ends back at ``base`` (so the load is level).

    Node moves of 1 to ~1 % of the nodes, a leaf removed (its nodes leave the fabric), a leaf re-cabled to
    another spine, then everything restored (the removed leaf comes back, every moved node goes home).
    """
    nodes = sum(len(fabrics.node_names(s)) for s in fabrics.leaves(base))
    count = len(fabrics.leaves(current))
    kind = step % 10
    if kind in (0, 1, 2, 3, 5, 7):
        moved = (1, 3, 1, 8, 2, 1, 1, 1)[kind]
        return f"move-{moved}", fabrics.move_nodes(current, moved, offset=(step * 7) % count)
    if kind == 4:
        return "remove-leaf", fabrics.remove_leaf(current, index=(step * 13) % count)
    if kind == 6:
        return "rewire-leaf", rewire_leaf(current, step * 5)
    if kind == 8:
        moved = max(4, nodes // 100)
        return f"move-{moved}", fabrics.move_nodes(current, moved, offset=step % count)
    return "restore", copy.deepcopy(base)


def desired(model: dict[str, Any], source: str, prefix: str = "") -> dict[str, Wanted]:
    return fabrics.desired({**model, "namePrefix": prefix} if prefix else model, source)


# -- "a LIST equals the desired state" ----------------------------------------------------------------


def list_hypernodes(api: client.ApiClient, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every HyperNode that carries the managed-by label (whatever its source: a stray one must show)."""
    objects = client.CustomObjectsApi(api)
    selector = f"{ownership.MANAGED_BY_LABEL}={ownership.MANAGED_BY}"
    answer = cast(dict[str, Any], objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=selector,
                                                                     _request_timeout=timeout))  # fmt: skip
    items: list[dict[str, Any]] = answer["items"]
    return items


def differences(items: list[dict[str, Any]], wanted: dict[str, Wanted], sources: set[str]) -> list[str]:
    """What keeps ``items`` (one LIST) from being exactly ``wanted`` for ``sources``: [] when it is.

    Exactly: every wanted object exists with the wanted owner labels and spec, and its ``Synced``
    condition observed its current generation; no other object carries one of ``sources``' labels.
    """
    problems = []
    seen = set()
    for item in items:
        meta = item.get("metadata") or {}
        name = meta.get("name", "")
        owner = ownership.owner_of(meta.get("labels"))
        want = wanted.get(name)
        if want is None:
            if owner in sources:
                problems.append(f"{name}: not wanted (source {owner})")
            continue
        seen.add(name)
        if owner != want.source:
            problems.append(f"{name}: owner {owner}, wanted {want.source}")
        elif item.get("spec") != want.spec:
            problems.append(f"{name}: spec differs")
        else:
            conditions = (item.get("status") or {}).get("conditions") or []
            synced = next((c for c in conditions if c.get("type") == "Synced" and c.get("status") == "True"), None)
            if synced is None or synced.get("observedGeneration") != meta.get("generation"):
                problems.append(f"{name}: Synced does not observe generation {meta.get('generation')}")
    problems += [f"{name}: missing" for name in sorted(set(wanted) - seen)]
    return problems


@dataclass
class Convergence:
    seconds: float | None  # None: not within the bound
    lists: int
    failed_lists: int
    problems: list[str]


def wait_converged(api: client.ApiClient, wanted: dict[str, Wanted], sources: set[str], within: float,
                   period: float = 0.5) -> Convergence:  # fmt: skip
    """LIST until one equals ``wanted`` (errors while the API server is down are retried)."""
    started = time.monotonic()
    lists = failed = 0
    problems: list[str] = ["never listed"]
    while True:
        try:
            items = list_hypernodes(api)
        except Exception as exc:  # the API server restarting: connection refused, 5xx, 429
            failed += 1
            problems = [f"LIST failed: {type(exc).__name__}"]
        else:
            lists += 1
            problems = differences(items, wanted, sources)
            if not problems:
                return Convergence(round(time.monotonic() - started, 2), lists, failed, [])
        if time.monotonic() - started > within:
            return Convergence(None, lists, failed, problems)
        time.sleep(period)


# -- memory and file descriptors of each operator process ----------------------------------------------


def vm_rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def open_fds(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return None


@dataclass
class Series:
    """One process's samples: (seconds since it started, RSS MiB, open fds, its role then)."""

    name: str
    started: float
    elected: bool  # in the leader election (its role is "leader" or "standby"), else "single"
    samples: list[tuple[float, float, int, str]] = field(default_factory=list)
    ended: float | None = None

    def lived(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def stints(self, since: float) -> list[tuple[str, list[tuple[float, float, int]]]]:
        """The samples cut where the role changed: (role, [(seconds into the stint, RSS, fds)]).

        The first stint counts from ``since`` (the monotonic time the soak began: the cold sync is
        over) or from the process's start if it started later; a later stint counts from its first
        sample (a standby's takeover is a warm-up of its own).
        """
        out: list[tuple[str, list[tuple[float, float, int]]]] = []
        origin = max(0.0, since - self.started)
        for at, rss, fds, role in self.samples:
            if not out or out[-1][0] != role:
                origin = at if out else origin
                out.append((role, []))
            out[-1][1].append((at - origin, rss, fds))
        return out


@dataclass
class Sampler:
    """Every ``period`` s: VmRSS and the fd count of each registered live process, and who leads."""

    period: float
    leader: Callable[[], str | None] = lambda: None
    series: dict[str, Series] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    holder: str | None = None  # the last known leader (kept while the API server cannot say)
    holders: list[str] = field(default_factory=list)  # each leader in turn, as the samples saw them
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def add(self, name: str, pid: int, elected: bool = True) -> None:
        with self._lock:
            self.series[name] = Series(name, time.monotonic(), elected)
            self.pids[name] = pid

    def gone(self, name: str) -> None:
        """The process is about to be killed: no more samples (a dead pid's number may be reused)."""
        with self._lock:
            self.pids.pop(name, None)
            self.series[name].ended = time.monotonic()

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sample()  # the last word: who leads now, each process's last RSS and fds
        with self._lock:
            for name in list(self.pids):
                self.series[name].ended = time.monotonic()

    def sample(self) -> None:
        self.holder = self.leader() or self.holder
        if self.holder is not None and (not self.holders or self.holders[-1] != self.holder):
            self.holders.append(self.holder)
        with self._lock:
            for name, pid in self.pids.items():
                rss, fds = vm_rss_kib(pid), open_fds(pid)
                if rss is None or fds is None:
                    continue
                series = self.series[name]
                role = ("leader" if self.holder == name else "standby") if series.elected else "single"
                series.samples.append((time.monotonic() - series.started, round(rss / MiB, 1), fds, role))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()


def judge(samples: list[tuple[float, float, int]], warm: float, window: float, min_window: float,
          fd_slack: float = 5) -> dict[str, Any]:  # fmt: skip
    """Early (``warm`` .. ``warm + w`` s into the stint) against late (its last ``w`` s), w <= ``window``.

    ``flat``: the late median RSS <= the early median * 1.25 + 10 MiB, and the late median fd count <=
    the early median * 1.25 + ``fd_slack``; None (not judged) when the stint is too short for two windows
    of ``min_window`` s after ``warm`` (or has fewer than 3 samples in either).
    """
    end = samples[-1][0]
    out: dict[str, Any] = {"s": round(end), "samples": len(samples), "flat": None}
    samples = [s for s in samples if s[0] >= 0]  # before the soak began: the cold sync
    width = min(window, (end - warm) / 2)
    if width < min_window:
        return out
    early = [s for s in samples if warm <= s[0] < warm + width]
    late = [s for s in samples if s[0] > end - width]
    if len(early) < 3 or len(late) < 3:
        return out
    early_rss, late_rss = statistics.median(s[1] for s in early), statistics.median(s[1] for s in late)
    early_fds, late_fds = statistics.median(s[2] for s in early), statistics.median(s[2] for s in late)
    flat = late_rss <= early_rss * 1.25 + 10 and late_fds <= early_fds * 1.25 + fd_slack
    return out | {"window_s": round(width), "rss_mib_early_median": early_rss, "rss_mib_late_median": late_rss,
                  "fds_early_median": early_fds, "fds_late_median": late_fds, "flat": flat}  # fmt: skip


def summary(series: Series, since: float, warm: float, window: float, min_window: float,
            fd_slack: float = 5) -> dict[str, Any]:  # fmt: skip
    """A process's series in figures: start/end/max RSS and fds, and each stint judged for flatness."""
    samples = series.samples
    out: dict[str, Any] = {"lived_s": round(series.lived(), 1), "samples": len(samples)}
    if not samples:
        return out | {"stints": []}
    rss = [s[1] for s in samples]
    fds = [s[2] for s in samples]
    stints = [{"role": role, **judge(part, warm, window, min_window, fd_slack)} for role, part in series.stints(since)]
    return out | {"rss_mib_start": rss[0], "rss_mib_end": rss[-1], "rss_mib_max": max(rss),
                  "fds_start": fds[0], "fds_end": fds[-1], "fds_max": max(fds), "stints": stints}  # fmt: skip


# -- the strict tree at every state the scheduler could see, across API-server restarts -------------------


@dataclass
class TreeWatch:
    """tests/integration/watcher.py's StateWatcher, surviving API-server restarts.

    After a broken watch it resumes from the last resourceVersion it saw (no state is skipped);
    when that version is gone (410) it lists again and counts a ``relists`` (the states between
    were not seen, and are not claimed as checked).
    """

    api: client.ApiClient
    source: str
    states: int = 0
    reconnects: int = 0
    relists: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # why the watch broke, by exception type
    violations: list[tuple[str, str]] = field(default_factory=list)
    current: dict[str, HyperNode] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> TreeWatch:
        self._thread = threading.Thread(target=self._run, name=f"tree-watch-{self.source}", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the watch did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        if self.error is not None:
            raise self.error

    def bad_states(self) -> int:
        return len({version for version, _ in self.violations})

    def _mine(self, obj: dict[str, Any]) -> bool:
        return ownership.owner_of((obj.get("metadata") or {}).get("labels")) == self.source

    def _list(self, objects: client.CustomObjectsApi) -> str:
        listed = cast(dict[str, Any], objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=10))
        self.current = {i["metadata"]["name"]: HyperNode.model_validate(i) for i in listed["items"] if self._mine(i)}
        return str(listed["metadata"]["resourceVersion"])

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        try:
            version = self._list(objects)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            return
        finally:
            self._ready.set()
        while not self._stop.is_set():
            try:
                version = self._follow(objects, version)
            except client.ApiException as exc:
                if exc.status != 410:
                    self._broken(f"HTTP {exc.status}")
                    continue
                version = self._relist(objects)
            except Exception as exc:  # connection refused or reset while the API server restarts
                self._broken(type(exc).__name__)

    def _broken(self, why: str) -> None:
        self.reconnects += 1
        self.errors[why] = self.errors.get(why, 0) + 1
        self._stop.wait(0.5)

    def _relist(self, objects: client.CustomObjectsApi) -> str:
        while True:
            try:
                self.relists += 1
                return self._list(objects)
            except Exception:
                if self._stop.wait(0.5):
                    return ""

    def _follow(self, objects: client.CustomObjectsApi, version: str) -> str:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        for event in stream.stream(  # type: ignore[no-untyped-call]
            objects.list_cluster_custom_object, GROUP, VERSION, PLURAL,
            resource_version=version, timeout_seconds=2, allow_watch_bookmarks=True, _request_timeout=10,
        ):  # fmt: skip
            obj = event["object"]
            if event["type"] == "ERROR":
                raise client.ApiException(status=int((obj or {}).get("code") or 500), reason=str(obj))
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if event["type"] == "DELETED" or not self._mine(obj):
                self.current.pop(name, None)
            else:
                self.current[name] = HyperNode.model_validate(obj)
            self.states += 1
            self.violations.extend((version, p) for p in moment_problems(self.current))
            if self._stop.is_set():
                break
        return version
