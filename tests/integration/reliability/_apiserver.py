"""Helpers for the API-server fault scenarios (test_apiserver_faults.py).

- :class:`EventLog`: one list + watch of every HyperNode that survives API-server restarts (it
  reconnects and resumes from the last resourceVersion; a relist after ``410 Gone`` is compared
  with what it knew, so a deletion or re-creation in a gap still shows as a uid change). It
  records, per name, every ADDED/DELETED and every uid seen: "created once, never deleted, uid
  stable" is read from it.
- :func:`exact_state`: the cluster's owned HyperNodes against the emulated model's desired
  state: names, spec, ownership labels, ``Synced`` at the current generation.
- :class:`TimedFaultProxy`: the suite's FaultProxy, with a time on every recorded request (also
  the answers it makes up itself) and a random delay on every HyperNode write.
- :class:`Sampler`: counters summed over the restarts of what counts them: kube-apiserver's request
  counts (they start again at each of its starts) and the operator's counters (absent from /metrics
  while it does not lead, never reset while the process lives).
"""

from __future__ import annotations

import collections
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

from bench.fabrics import desired
from bench.measure import request_totals
from tests.faultproxy import WRITE_METHODS, FaultProxy, Rule
from volcano_topology import kube, ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane

SOURCE = "emulated"
MODELS = Path(__file__).resolve().parents[3] / "providers" / "emulated" / "volcano_topology_emulated" / "models"


def model(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    return loaded


def wanted_specs(model_name: str) -> dict[str, Any]:
    """Name -> spec the operator must write for the shipped model (the emulated provider's own build)."""
    return {name: w.spec for name, w in desired(model(model_name), SOURCE).items()}


# -- the watch ---------------------------------------------------------------------------------------


@dataclass
class Record:
    adds: int = 0
    deletes: int = 0
    uids: list[str] = field(default_factory=list)


@dataclass
class EventLog:
    """Every HyperNode event from before the scenario to its end, across API-server restarts."""

    api: client.ApiClient
    records: dict[str, Record] = field(default_factory=lambda: collections.defaultdict(Record))
    current: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0
    reconnects: int = 0
    relists: int = 0
    _version: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> EventLog:
        self._relist(initial=True)
        self._thread = threading.Thread(target=self._run, name="h1-event-log", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def owned(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {n: o for n, o in self.current.items() if _owner(o) == SOURCE}

    def owned_count(self) -> int:
        return len(self.owned())

    def _note(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name, uid = meta.get("name", ""), meta.get("uid", "")
        with self._lock:
            record = self.records[name]
            if kind == "DELETED":
                record.deletes += 1
                self.current.pop(name, None)
            else:
                if kind == "ADDED":
                    record.adds += 1
                if uid and uid not in record.uids:
                    record.uids.append(uid)
                self.current[name] = obj
            self.events += 1

    def _relist(self, initial: bool = False) -> None:
        listed = client.CustomObjectsApi(self.api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
        fresh = {i["metadata"]["name"]: i for i in listed["items"]}
        with self._lock:
            known = dict(self.current)
        for name, obj in fresh.items():
            if initial or name not in known:
                self._note("ADDED", obj)
            elif obj["metadata"]["uid"] != known[name]["metadata"]["uid"]:  # deleted and made again in a gap
                self._note("DELETED", known[name])
                self._note("ADDED", obj)
            else:
                self._note("MODIFIED", obj)
        for name in set(known) - set(fresh):
            self._note("DELETED", known[name])
        self._version = str(listed["metadata"]["resourceVersion"])
        if not initial:
            self.relists += 1

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            try:
                stream = watch.Watch()
                for event in stream.stream(
                    objects.list_cluster_custom_object, GROUP, VERSION, PLURAL, resource_version=self._version,
                    timeout_seconds=5, allow_watch_bookmarks=True, _request_timeout=(3, 10),
                ):  # fmt: skip
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        raise client.ApiException(status=int(obj.get("code") or 410))
                    self._version = str(obj["metadata"]["resourceVersion"])
                    if kind != "BOOKMARK":
                        self._note(kind, obj)
                    if self._stop.is_set():
                        return
            except client.ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    self._retry(self._relist)
                else:
                    self.reconnects += 1
                    time.sleep(0.3)
            except Exception:  # the API server went away: reconnect and resume from the last version
                if self._stop.is_set():
                    return
                self.reconnects += 1
                time.sleep(0.3)

    def _retry(self, action: Any) -> None:
        while not self._stop.is_set():
            try:
                action()
                return
            except Exception:
                time.sleep(0.3)


def _owner(obj: dict[str, Any]) -> str | None:
    return ownership.owner_of((obj.get("metadata") or {}).get("labels"))


# -- the state reached ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    objects_checked: int
    missing: list[str]
    unexpected: list[str]
    wrong_spec: list[str]
    wrong_labels: list[str]
    not_synced: list[str]
    rewritten: list[str]  # generation > 1: the spec was written more than once

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_spec or self.wrong_labels or self.not_synced)

    def describe(self) -> str:
        parts = {k: v[:5] for k, v in vars(self).items() if isinstance(v, list) and v}
        return f"{self.objects_checked} checked; " + ", ".join(
            f"{k}: {len(getattr(self, k))} {v}" for k, v in parts.items()
        )


def exact_state(api: client.ApiClient, wanted: dict[str, Any]) -> Verdict:
    """The cluster's HyperNodes owned by the emulated provider, against ``wanted`` (name -> spec)."""
    items = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    owned = {i["metadata"]["name"]: i for i in items if _owner(i) == SOURCE}
    labels = ownership.ownership_labels(SOURCE)
    verdict = Verdict(len(owned), sorted(set(wanted) - set(owned)), sorted(set(owned) - set(wanted)), [], [], [], [])
    for name, obj in sorted(owned.items()):
        if name not in wanted:
            continue
        meta = obj["metadata"]
        if obj.get("spec") != wanted[name]:
            verdict.wrong_spec.append(name)
        if any((meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
            verdict.wrong_labels.append(name)
        if int(meta.get("generation") or 0) != 1:
            verdict.rewritten.append(name)
        conditions = (obj.get("status") or {}).get("conditions") or []
        synced = [c for c in conditions if c.get("type") == "Synced"]
        if not (
            synced
            and synced[0].get("status") == "True"
            and synced[0].get("observedGeneration") == meta.get("generation")
        ):
            verdict.not_synced.append(name)
    return verdict


def effects(log: EventLog, wanted: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(lost, duplicated) of the wanted objects by the watch: lost = never seen or seen deleted; duplicated =
    added more than once or with more than one uid (deleted and created again)."""
    with log._lock:
        records = {n: log.records[n] for n in wanted if n in log.records}
        current = set(log.current)
    lost = sorted(n for n in wanted if n not in records or n not in current or records[n].deletes)
    duplicated = sorted(n for n, r in records.items() if r.adds > 1 or len(r.uids) > 1)
    return lost, duplicated


def delete_owned(api: client.ApiClient) -> None:
    """Every HyperNode of a previous scenario (bystanders are re-seeded by the suite's fixture)."""
    objects = client.CustomObjectsApi(api)
    for item in objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
        if not item["metadata"]["name"].startswith("bystander-"):
            objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item["metadata"]["name"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        if all(i["metadata"]["name"].startswith("bystander-") for i in items):
            return
        time.sleep(0.2)
    raise AssertionError("previous scenario's HyperNodes not deleted")


# -- counters that start again: the API server's at each of its starts, the writer's at each term ---------


class Sampler:
    """Reads counters every ``every`` seconds from a thread and sums them over restarts of their source.

    Every counter starts again when ``life()`` changes (the API server's pid); one counter that goes down
    has started again on its own; one that is absent from a reading (the operator's per-provider counters
    while it does not lead) keeps its last value.
    What happened after the last reading of a life that ended abruptly is not counted: at most ``every``
    seconds of it.
    """

    def __init__(self, read: Callable[[], dict[str, float]], life: Callable[[], object] = lambda: None,
                 every: float = 0.25) -> None:  # fmt: skip
        self.read, self.life, self.every = read, life, every
        self.base: collections.Counter[str] = collections.Counter()
        self.last: dict[str, float] = {}
        self.lives = 1  # of the source (the API server)
        self.restarts = 0  # readings in which some counters had started again (the writer's, at a new term)
        self._life: object = life()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="h1-sampler", daemon=True)

    def start(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        life = self.life()
        try:
            reading = self.read()
        except Exception:
            return  # down: the last reading of this life stands
        if self.life() != life:
            return
        with self._lock:
            if life != self._life:  # every counter starts again
                self.base.update(self.last)
                self.lives += 1
                self._life = life
            else:  # only the counters that went down started again
                restarted = {k: v for k, v in self.last.items() if k in reading and reading[k] < v}
                self.base.update(restarted)
                self.restarts += bool(restarted)
                # One that is absent (a provider's, while this replica does not lead) is not reset: it comes
                # back where it was, as counters do while the process lives.
                reading = {**{k: v for k, v in self.last.items() if k not in reading}, **reading}
            self.last = reading

    def total(self) -> collections.Counter[str]:
        """Stop sampling; one last reading, then the sum over every life."""
        self._stop.set()
        self._thread.join(5)
        self.sample()
        with self._lock:
            return self.base + collections.Counter(self.last)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()


def apiserver_hypernode_requests(plane: LocalControlPlane) -> Callable[[], dict[str, float]]:
    """``apiserver_request_total`` for HyperNodes by ``VERB resource[/subresource]``."""

    def read() -> dict[str, float]:
        status, text = plane.request("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"kube-apiserver /metrics: HTTP {status}")
        return {k: float(v) for k, v in request_totals(str(text)).items() if "hypernodes" in k}

    return read


_METRIC = re.compile(r"^(volcano_topology_[a-z_]+)(\{[^}]*\})? (\S+)$")


def operator_counters(get: Callable[[str], tuple[int, str]]) -> Callable[[], dict[str, float]]:
    """The operator's ``*_total`` counters, ``name{labels}`` -> value, from its /metrics."""

    def read() -> dict[str, float]:
        status, text = get("/metrics")
        if status != 200:
            raise RuntimeError(f"operator /metrics: HTTP {status}")
        found = {}
        for line in text.splitlines():
            match = _METRIC.match(line)
            if match and match.group(1).endswith("_total"):
                found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        return found

    return read


def summed(counters: collections.Counter[str], name: str, **labels: str) -> float:
    return sum(
        v for k, v in counters.items()
        if k.split("{", 1)[0] == name and all(f'{a}="{b}"' in k for a, b in labels.items())
    )  # fmt: skip


def server_write_requests(counts: Mapping[str, float]) -> dict[str, int]:
    """The operator's HyperNode writes: server-side applies (spec and status). Its only other write, DELETE,
    is not expected in these scenarios (the watch proves there was none); the harness's own writes (the
    bystanders: POST, DELETE, merge PATCH) are left out."""
    return {k: int(v) for k, v in sorted(counts.items()) if k.split(" ")[0] == "APPLY" and v}


# -- the proxy ---------------------------------------------------------------------------------------------

_HYPERNODE_PATH = re.compile(rf"/apis/{re.escape(GROUP)}/{VERSION}/{PLURAL}/([^/?]+)(/status)?")


def hypernode_of(path: str) -> tuple[str, bool] | None:
    """(name, is the status subresource) of a request for one HyperNode; None for a list or a watch."""
    match = _HYPERNODE_PATH.search(path)
    return (match.group(1), bool(match.group(2))) if match else None


class TimedFaultProxy(FaultProxy):
    """A FaultProxy that times every request it records and delays each HyperNode write by a random
    ``delay`` (a (low, high) range) unless an explicit rule acts first."""

    def __init__(self, plane: LocalControlPlane, delay: tuple[float, float], seed: int = 13) -> None:
        assert plane.pki is not None
        super().__init__(plane.url, plane.pki.ca_cert, plane.pki.serving_cert, plane.pki.serving_key)
        self.delay = delay
        self.random = random.Random(seed)
        self.delayed = 0

    def first(self, rule: Rule) -> Rule:
        """A rule tried before every other."""
        with self._lock:
            self.rules.insert(0, rule)
        return rule

    def _take_rule(self, method: str, path: str) -> Rule | None:
        rule = super()._take_rule(method, path)
        if rule is None and method in WRITE_METHODS and "/hypernodes" in path:
            with self._lock:
                self.delayed += 1
                return Rule(method, action="delay", delay=self.random.uniform(*self.delay))
        return rule

    def _record(self, method: str, path: str, status: int, body: bytes | None = None, **times: float | None) -> None:
        # The answers the proxy makes up itself (429s) are recorded without times: stamp them now.
        times.setdefault("received", time.monotonic())
        super()._record(method, path, status, body, **times)


def kubeconfig_via(plane: LocalControlPlane, proxy: FaultProxy, path: Path) -> Path:
    return plane.write_kubeconfig(path, plane.admin_token, "admin-via-h1-proxy", server=proxy.url)


def admin_api(plane: LocalControlPlane) -> client.ApiClient:
    return kube.api_client(plane.kubeconfig)
