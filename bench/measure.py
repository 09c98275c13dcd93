"""What a scenario measures: API requests (the API server's own count), process CPU and peak RSS,
and the cluster's state as seen by ONE watch (the checker), compared with the desired state."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.kubehttp import Api

HYPERNODES = "/apis/topology.volcano.sh/v1alpha1/hypernodes"
SOURCE_LABEL = "volcano.sh/network-topology-source"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
_REQUEST = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = ("APPLY", "PATCH", "POST", "PUT", "DELETE", "DELETECOLLECTION")


def request_totals(metrics_text: str) -> collections.Counter[str]:
    """``apiserver_request_total`` summed over codes and scopes, by ``VERB resource[/subresource]``."""
    totals: collections.Counter[str] = collections.Counter()
    for line in metrics_text.splitlines():
        match = _REQUEST.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(1)))
        if not labels.get("resource"):
            continue  # /metrics, /readyz...: not a resource request
        sub = labels.get("subresource") or ""
        dry = " dry-run" if labels.get("dry_run") else ""  # the operator's writer-fence check: writes nothing
        totals[f"{labels.get('verb', '?')} {labels['resource']}" + (f"/{sub}" if sub else "") + dry] += int(
            float(match.group(2))
        )
    return totals


def hypernode_writes(requests: dict[str, int]) -> int:
    return sum(
        n
        for key, n in requests.items()
        if key.split(" ")[0] in WRITE_VERBS and "hypernodes" in key and not key.endswith(" dry-run")
    )


def hypernode_lists(requests: dict[str, int]) -> int:
    return requests.get("LIST hypernodes", 0)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int | None, key: str = "VmHWM") -> int:
    if pid is None:
        return 0
    with contextlib.suppress(OSError):
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int | None) -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so a peak is per scenario."""
    if pid is not None:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")


@dataclass
class Snapshot:
    """Counters at one moment; ``delta(later)`` is what happened in between."""

    at: float
    requests: collections.Counter[str]
    own: collections.Counter[str]
    cpu: dict[str, float]


@dataclass
class Probe:
    """Takes snapshots: the API server's request counts minus the harness's own, CPU of named processes."""

    api: Api
    pids: dict[str, int | None] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        text = self.api.metrics()
        return Snapshot(time.monotonic(), request_totals(text), collections.Counter(self.api.tally),
                        {name: cpu_seconds(pid) for name, pid in self.pids.items()})  # fmt: skip

    def delta(self, before: Snapshot, after: Snapshot) -> dict[str, Any]:
        requests = {}
        for key in set(after.requests) | set(before.requests):
            theirs = after.requests[key] - before.requests[key] - (after.own[key] - before.own[key])
            if theirs:
                requests[key] = theirs
        return {
            "requests": dict(sorted(requests.items())),
            "harnessRequests": dict(
                sorted((k, after.own[k] - before.own[k]) for k in after.own if after.own[k] - before.own[k])
            ),
            "cpuSeconds": {n: round(after.cpu.get(n, 0) - before.cpu.get(n, 0), 2) for n in after.cpu},
        }


@dataclass(slots=True)
class Seen:
    source: str | None  # None: not managed by volcano-topology
    spec: Any
    generation: int
    synced_generation: int | None  # observedGeneration of a Synced=True condition
    node_count: int | None


def seen_from(obj: dict[str, Any]) -> Seen:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = obj.get("status") or {}
    synced = next((c for c in status.get("conditions") or [] if c.get("type") == "Synced"), None)
    return Seen(
        labels.get(SOURCE_LABEL) if labels.get(MANAGED_BY_LABEL) == "volcano-topology" else None,
        obj.get("spec"),
        int(meta.get("generation") or 0),
        synced.get("observedGeneration") if synced and synced.get("status") == "True" else None,
        status.get("nodeCount"),
    )


@dataclass(frozen=True)
class Wanted:
    source: str
    spec: Any
    node_count: int | None = None


class Checker:
    """ONE list + ONE long watch of every HyperNode; tells when the cluster equals the desired state.

    Desired: exactly the expected objects carry the expected sources' labels; each has the expected
    spec, ``Synced=True`` with ``observedGeneration == metadata.generation`` (and the expected
    ``nodeCount`` when one is given). Its requests go through ``api`` and so are tallied as the
    harness's own (the watch is counted by the API server only when it ends: at ``stop()``).
    """

    def __init__(self, api: Api) -> None:
        self.api = api
        self.objects: dict[str, Seen] = {}
        self.wanted: dict[str, Wanted] = {}
        self.sources: set[str] = set()
        self.bad: set[str] = set()
        self.cond = threading.Condition()
        self.converged_at: float | None = None
        self.first_event_at: float | None = None
        self.events = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="checker", daemon=True)
        self.error: str | None = None

    def start(self) -> Checker:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"checker did not start: {self.error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.sock.shutdown(2)
        self._thread.join(10)

    # -- desired state ----------------------------------------------------------------

    def expect(self, wanted: dict[str, Wanted]) -> None:
        """Set the desired state; from now on ``first_event_at`` is the first event seen."""
        with self.cond:
            self.wanted = wanted
            self.sources = {w.source for w in wanted.values()} | self.sources
            self.first_event_at = None
            self.bad = {n for n in set(wanted) | set(self.objects) if not self._good(n)}
            self.converged_at = time.monotonic() if not self.bad else None
            self.cond.notify_all()

    def expect_empty(self, sources: set[str]) -> None:
        with self.cond:
            self.sources |= sources
        self.expect({})

    def _good(self, name: str) -> bool:
        seen, wanted = self.objects.get(name), self.wanted.get(name)
        if wanted is None:
            return seen is None or seen.source is None or seen.source not in self.sources
        return (
            seen is not None
            and seen.source == wanted.source
            and seen.spec == wanted.spec
            and seen.synced_generation == seen.generation
            and (wanted.node_count is None or seen.node_count == wanted.node_count)
        )

    def owned(self) -> int:
        with self.cond:
            return sum(1 for s in self.objects.values() if s.source in self.sources)

    def wait(self, timeout: float) -> float | None:
        """The monotonic time the desired state was reached, or None when not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.bad or self.converged_at is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.error:
                    return None
                self.cond.wait(min(left, 1.0))
            return self.converged_at

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
            return True

    def describe_bad(self, limit: int = 3) -> str:
        with self.cond:
            out = []
            for name in sorted(self.bad)[:limit]:
                seen, wanted = self.objects.get(name), self.wanted.get(name)
                if seen is None:
                    out.append(f"{name}: missing")
                elif wanted is None:
                    out.append(f"{name}: not wanted (source {seen.source})")
                elif seen.spec != wanted.spec:
                    out.append(f"{name}: spec differs")
                elif seen.synced_generation != seen.generation:
                    out.append(f"{name}: Synced observedGeneration {seen.synced_generation} != {seen.generation}")
                else:
                    out.append(f"{name}: nodeCount {seen.node_count} != {wanted.node_count}")
            return f"{len(self.bad)} not as desired: " + "; ".join(out)

    # -- the watch ----------------------------------------------------------------------

    def _apply(self, kind: str, obj: dict[str, Any], at: float) -> None:
        name = obj.get("metadata", {}).get("name")
        if not name:
            return
        with self.cond:
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = seen_from(obj)
            self.events += 1
            if self.first_event_at is None:
                self.first_event_at = at
            if self._good(name):
                self.bad.discard(name)
            else:
                self.bad.add(name)
            if self.bad:
                self.converged_at = None
            elif self.converged_at is None:
                self.converged_at = at
            self.cond.notify_all()  # wait_for() predicates look at every event (e.g. the failover's kill point)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                version = self._list()
                self._ready.set()
                self._watch(version)
        except Exception as exc:  # reported by wait() and by the scenario
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()
            with self.cond:
                self.cond.notify_all()

    def _list(self) -> str:
        answer = self.api.must("GET", HYPERNODES)
        with self.cond:
            self.objects = {i["metadata"]["name"]: seen_from(i) for i in answer.get("items") or []}
            self.bad = {n for n in set(self.wanted) | set(self.objects) if not self._good(n)}
        return str(answer["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        path = f"{HYPERNODES}?watch=1&resourceVersion={version}&timeoutSeconds=3600&allowWatchBookmarks=true"
        self.api.count("GET", path)
        conn = self._conn = self.api.connect(timeout=None)
        conn.request("GET", path, headers=self.api.headers())
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"watch: HTTP {response.status}: {response.read()[:300]!r}")
        buffer = b""
        while not self._stop.is_set():
            chunk = response.read1(1 << 16)
            if not chunk:
                return  # the watch timed out: list and watch again
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            at = time.monotonic()
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                if kind == "ERROR":
                    return  # 410 Gone: list again
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._apply(kind, event["object"], at)
                elif kind == "BOOKMARK":
                    version = event["object"]["metadata"]["resourceVersion"]
