"""API-server faults during a full sync (issue 13, item 1): the operator process (``volcano-topology
run``, emulated provider, leader election on as deployed) against a private kube-apiserver + etcd.

1. kube-apiserver restarted N times during the sync (killed outright, or stopped gracefully);
2. etcd paused (SIGSTOP) for longer than the operator's request timeout, then resumed;
3. every HyperNode write delayed 0.2-0.5 s through a proxy, plus a storm of 429s with Retry-After.

Each must end in exactly the desired state (names, spec, ownership labels, ``Synced``), with no
effect lost or repeated (a watch from before the start: every object added once, never deleted,
one uid, its spec written once: ``generation`` 1), bounded retries and bounded memory, and the
bystanders byte for byte unchanged.

Retry bounds come from the writer's policy (volcano_topology/retries.py, RetryPolicy defaults,
as the operator builds it: initial 0.2 s doubling to 10 s, 10 attempts, 60 s deadline): a write
gives up only after at least ``MIN_GIVE_UP`` seconds of failures, so outages shorter than that
may cost no failed object at all; and a fault can repeat at most the requests in flight when it
struck (``concurrency`` spec writes plus ``concurrency`` status writes) once each.
"""

from __future__ import annotations

import collections
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bench.measure import rss_kib
from tests.faultproxy import Rule
from tests.integration.operator_harness import OperatorProcess, write_config
from tests.integration.reliability._apiserver import (
    SOURCE,
    EventLog,
    Sampler,
    TimedFaultProxy,
    apiserver_hypernode_requests,
    delete_owned,
    effects,
    exact_state,
    hypernode_of,
    kubeconfig_via,
    operator_counters,
    server_write_requests,
    summed,
    wanted_specs,
)
from tests.integration.reliability.conftest import FULL, Figures, scaled, seed_bystanders
from volcano_topology import kube
from volcano_topology.config import OperatorSettings
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.retries import RetryPolicy

MODEL = scaled("medium-1024", "large-16384")
# Fast: few writers, so a 35-object sync lasts long enough to be interrupted twice.
CONCURRENCY = scaled(2, 8)
POLICY = RetryPolicy()  # what the operator runs with (its deadline is operator.retryDeadline, 60 s by default)
REQUEST_TIMEOUT = OperatorSettings().request_timeout
# The least time a write keeps retrying before it gives up: the backoff without jitter over its attempts.
MIN_GIVE_UP = min(sum(min(POLICY.initial * 2**n, POLICY.maximum) for n in range(POLICY.attempts - 1)), POLICY.deadline)
RSS_BOUND_MIB = scaled(300, 450)  # generous: the bench measured 97 MiB (1,024 nodes) and 147 MiB (16,384) fault-free
CONVERGE_WITHIN = scaled(120.0, 300.0)


@pytest.fixture(scope="module")
def plane(private_control_plane: LocalControlPlane) -> Iterator[LocalControlPlane]:
    yield private_control_plane
    # The proxy's watch streams upstream outlive it, and a SIGTERMed kube-apiserver waits for them (15 s,
    # then the fixture kills it): kill it now, its data is thrown away anyway.
    if private_control_plane.apiserver_pid is not None:
        os.kill(private_control_plane.apiserver_pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def api(plane: LocalControlPlane) -> Iterator[client.ApiClient]:
    made = kube.api_client(plane.kubeconfig)
    yield made
    made.close()


@pytest.fixture
def operators(plane: LocalControlPlane, api: client.ApiClient) -> Iterator[list[OperatorProcess]]:
    delete_owned(api)
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        operator.stop(signal.SIGKILL if operator.process and operator.process.poll() is None else signal.SIGTERM)
    if plane.apiserver_pid is None:  # a failed scenario may have left it down
        plane.start_apiserver()
    plane.resume_etcd()


def launch(
    operators: list[OperatorProcess], kubeconfig: Path, tmp_path: Path, lease: str, concurrency: int = CONCURRENCY
) -> OperatorProcess:
    config = write_config(
        tmp_path / "config.yaml",
        [{"source": SOURCE, "config": {"modelFile": MODEL}}],
        concurrency=concurrency,
        leaderElection={"enabled": True, "leaseName": lease, "namespace": "default"},
    )
    operator = OperatorProcess(kubeconfig, tmp_path, config=config, identity=f"{lease}-a").start()
    operators.append(operator)
    return operator


def wait(condition: Callable[[], bool], operator: OperatorProcess, within: float, what: str) -> None:
    """Poll quickly (a fast-size sync lasts about a second); fail at once if the operator exited."""
    deadline = time.monotonic() + within
    while not condition():
        assert operator.process is not None
        if operator.process.poll() is not None:
            raise AssertionError(
                f"operator exited ({operator.process.returncode}) waiting for {what}:\n{operator.tail()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:.0f}s:\n{operator.tail()}")
        time.sleep(0.02)


def converge(api: client.ApiClient, wanted: dict[str, Any], operator: OperatorProcess) -> float:
    """Seconds until the cluster holds exactly ``wanted`` (listed once a second)."""
    started = time.monotonic()
    last = None

    def exact() -> bool:
        nonlocal last
        try:
            last = exact_state(api, wanted)
        except Exception:  # the API server may still be coming back
            return False
        if not last.exact:
            time.sleep(0.5)
        return last.exact

    try:
        wait(exact, operator, CONVERGE_WITHIN, "the exact desired state")
    except AssertionError as exc:
        raise AssertionError(f"{last.describe() if last else 'never listed'}\n{exc}") from None
    return time.monotonic() - started


def operator_figures(counters: collections.Counter[str]) -> dict[str, float]:
    """The writer's and the status writer's counters, summed over leadership terms."""
    w = "volcano_topology_writes_total"
    return {
        "creates": summed(counters, w, provider=SOURCE, verb="create"),
        "updates": summed(counters, w, provider=SOURCE, verb="update"),
        "deletes": summed(counters, w, provider=SOURCE, verb="delete"),
        "failures": summed(counters, "volcano_topology_failures_total", provider=SOURCE),
        "status_writes": summed(counters, "volcano_topology_status_writes_total"),
        "status_conflicts": summed(counters, "volcano_topology_status_conflicts_total"),
        "writer_errors": summed(counters, "volcano_topology_writer_errors_total", provider=SOURCE),
    }


class Counts:
    """HyperNode requests as kube-apiserver counted them and the operator's counters, over restarts of both."""

    def __init__(self, plane: LocalControlPlane) -> None:
        self.server = Sampler(apiserver_hypernode_requests(plane), life=lambda: plane.apiserver_pid).start()
        self.before = dict(self.server.last)
        self.operator: Sampler | None = None

    def watch(self, operator: OperatorProcess) -> None:
        self.operator = Sampler(operator_counters(operator.get)).start()

    def finish(self) -> tuple[dict[str, int], dict[str, float], int]:
        """(server write requests by verb, operator figures, leadership terms seen)."""
        assert self.operator is not None
        server = self.server.total()
        server.subtract(self.before)
        counters = self.operator.total()
        terms = int(counters.get("volcano_topology_leadership_terms_total", 0))
        return server_write_requests(server), operator_figures(counters), terms

    def stop(self) -> None:
        for sampler in (self.server, self.operator):
            if sampler is not None:
                sampler.total()


def repeat_bound(stalls: list[float]) -> int:
    """HyperNode writes beyond the one create and one status write per object that faults may cost.

    The operator has ``concurrency`` request slots for spec writes and as many for status writes. A
    slot sends its next request only once the last one was answered or abandoned (after the request
    timeout), so while the API server holds requests for ``stall`` seconds (etcd paused, or a graceful
    stop; 0 for a kill, which only loses what was in flight), one slot can leave at most
    ``ceil(stall / timeout)`` requests there to land later, plus one: the request in flight when the
    fault struck, or one sent again after it because the read before it did not yet show a landed one.
    """
    slots = 2 * CONCURRENCY
    return sum(slots * (math.ceil(stall / REQUEST_TIMEOUT) + 1) for stall in stalls)


def check_outcome(
    api: client.ApiClient, log: EventLog, wanted: dict[str, Any], ops: dict[str, float]
) -> tuple[int, int]:
    """Everything every scenario must end with; returns (lost, duplicated)."""
    verdict = exact_state(api, wanted)
    assert verdict.exact, verdict.describe()
    assert not verdict.rewritten, f"spec written more than once (generation > 1): {verdict.rewritten[:5]}"
    lost, duplicated = effects(log, wanted)
    assert not lost, f"lost (never seen, or deleted on the way): {lost[:5]}"
    assert not duplicated, f"deleted and created again, or added twice: {duplicated[:5]}"
    assert ops["creates"] <= len(wanted), "a create counted twice"  # a lost answer's create is not counted
    assert (ops["updates"], ops["deletes"]) == (0, 0), "a cold sync needs creates only"
    assert ops["writer_errors"] == 0, "the writer loop hit an unexpected exception"
    return len(lost), len(duplicated)


def peak_rss_mib(operator: OperatorProcess) -> float:
    assert operator.process is not None
    peak = rss_kib(operator.process.pid, "VmHWM") / 1024
    assert 0 < peak < RSS_BOUND_MIB, f"operator peak RSS {peak:.0f} MiB (bound {RSS_BOUND_MIB} MiB)"
    return round(peak, 1)


# -- 1. kube-apiserver restarted during the sync -------------------------------------------------------


def test_apiserver_restarted_repeatedly_during_a_full_sync(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], tmp_path: Path,
    figures: Figures,
) -> None:  # fmt: skip
    restarts = scaled(2, 5)
    wanted = wanted_specs(MODEL)
    bystanders = seed_bystanders(api)
    log = EventLog(api).start()
    counts = Counts(plane)
    operator = launch(operators, plane.kubeconfig, tmp_path, "h1-restarts")
    counts.watch(operator)
    started = time.monotonic()
    outages: list[float] = []
    stalls: list[float] = []  # what each restart may have left held on the server (see repeat_bound)
    mid_sync = killed = 0
    try:
        for i in range(restarts):
            threshold = math.ceil(len(wanted) * (i + 1) / (restarts + 1))
            wait(lambda t=threshold: log.owned_count() >= t, operator, CONVERGE_WITHIN, f"{threshold} objects")  # type: ignore[misc]
            mid_sync += log.owned_count() < len(wanted)
            counts.server.sample()  # the last reading of this life (what follows, until the kill, is not counted)
            down = time.monotonic()
            kill = i % 2 == 0 or not FULL
            if kill:  # killed outright: answers in flight are lost
                assert plane.apiserver_pid is not None
                os.kill(plane.apiserver_pid, signal.SIGKILL)
                killed += 1
            plane.stop_apiserver()  # or stopped: SIGTERM, SIGKILL 15 s later if it has not exited by then
            stopping = time.monotonic() - down
            plane.start_apiserver()
            outages.append(round(time.monotonic() - down, 2))
            # A stopping API server may hold requests unanswered and still carry them out.
            stalls.append(0.0 if kill else stopping)
        converge(api, wanted, operator)
        seconds = time.monotonic() - started
        writes, ops, terms = counts.finish()
        lost, duplicated = check_outcome(api, log, wanted, ops)
        server_writes = sum(writes.values())
        rss = peak_rss_mib(operator)
        figures.record(
            trials=1, model=MODEL, concurrency=CONCURRENCY, faults_injected=restarts, restarts_killed=killed,
            restarts_graceful=restarts - killed, restarts_mid_sync=mid_sync, outage_seconds=outages,
            stopping_seconds=[round(s, 2) for s in stalls],
            writes_note="kube-apiserver's counts sampled every 0.25 s: the last moments of each life are missing",
            objects_checked=len(wanted), lost=lost, duplicated=duplicated, peak_rss_mib=rss,
            writes=server_writes, server_write_requests=writes, operator=ops, leadership_terms=terms,
            watch_relists=log.relists,
            seconds_to_converge=round(seconds, 1),
        )  # fmt: skip
        assert mid_sync >= 1, "no restart struck while the sync was still running"
        # Retries: each outage was shorter than a write keeps retrying, so no object may have failed;
        # each restart can repeat at most the spec and status writes in flight when it struck.
        assert max(outages) < MIN_GIVE_UP, f"an outage outlasted the retry budget ({MIN_GIVE_UP:.1f}s): {outages}"
        assert ops["failures"] == 0, f"objects failed although every outage fit the retry budget: {ops}"
        bound = 2 * len(wanted) + repeat_bound(stalls) + ops["status_conflicts"]
        assert server_writes <= bound, f"{server_writes} HyperNode writes reached the API server; bound {bound}"
        figures.record(bystanders_checked=bystanders.check())
    finally:
        counts.stop()
        log.stop()
        operator.stop()


# -- 2. etcd paused past the request timeout ----------------------------------------------------------------


def test_etcd_paused_past_the_request_timeout_mid_sync(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], tmp_path: Path,
    figures: Figures,
) -> None:  # fmt: skip
    # Past the 4 s request timeout; at the full size also past the 15 s lease (the leader steps down).
    pauses = scaled([REQUEST_TIMEOUT + 2], [REQUEST_TIMEOUT + 2, 20.0])
    wanted = wanted_specs(MODEL)
    bystanders = seed_bystanders(api)
    log = EventLog(api).start()
    counts = Counts(plane)
    operator = launch(operators, plane.kubeconfig, tmp_path, "h1-etcd")
    counts.watch(operator)
    started = time.monotonic()
    unhealthy = 0.0
    mid_sync = 0
    try:
        for i, pause in enumerate(pauses):
            threshold = math.ceil(len(wanted) * (i + 1) / (len(pauses) + 1))
            wait(lambda t=threshold: log.owned_count() >= t, operator, CONVERGE_WITHIN, f"{threshold} objects")  # type: ignore[misc]
            mid_sync += log.owned_count() < len(wanted)
            plane.pause_etcd()
            try:
                until = time.monotonic() + pause
                while time.monotonic() < until:
                    tick = time.monotonic()
                    status, _ = operator.get("/healthz")
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
                    unhealthy += (time.monotonic() - tick) if status != 200 else 0.0
            finally:
                plane.resume_etcd()
            assert operator.process is not None and operator.process.poll() is None, "the operator exited"
        converge(api, wanted, operator)
        seconds = time.monotonic() - started
        writes, ops, terms = counts.finish()
        lost, duplicated = check_outcome(api, log, wanted, ops)
        server_writes = sum(writes.values())
        rss = peak_rss_mib(operator)
        assert operator.process is not None and operator.process.poll() is None, "the operator exited"
        figures.record(
            trials=1, model=MODEL, concurrency=CONCURRENCY, faults_injected=len(pauses), pause_seconds=pauses,
            request_timeout=REQUEST_TIMEOUT, pauses_mid_sync=mid_sync, healthz_failing_seconds=round(unhealthy, 1),
            operator_exited=False, objects_checked=len(wanted), lost=lost, duplicated=duplicated,
            peak_rss_mib=rss, writes=server_writes, server_write_requests=writes, operator=ops,
            leadership_terms=terms, watch_relists=log.relists, seconds_to_converge=round(seconds, 1),
        )  # fmt: skip
        assert mid_sync >= 1, "no pause struck while the sync was still running"
        assert max(pauses) < MIN_GIVE_UP
        assert ops["failures"] == 0, f"objects failed although every pause fit the retry budget: {ops}"
        # Requests abandoned after the timeout still land when etcd resumes (see repeat_bound).
        bound = 2 * len(wanted) + repeat_bound(pauses) + ops["status_conflicts"]
        assert server_writes <= bound, f"{server_writes} HyperNode writes reached the API server; bound {bound}"
        # The deploy's liveness probe (10 s period, 3 failures) restarts the pod after 30 s of failing /healthz.
        assert unhealthy < 30, f"/healthz failed {unhealthy:.0f}s: the deploy would have restarted the operator"
        figures.record(bystanders_checked=bystanders.check())
    finally:
        counts.stop()
        log.stop()
        operator.stop()


# -- 3. latency and a 429 storm through a proxy ----------------------------------------------------------------


def test_latency_and_429_storm_through_a_proxy(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], tmp_path: Path,
    figures: Figures,
) -> None:  # fmt: skip
    retry_after = 2.0
    storm_size = scaled(16, 48)  # on any HyperNode write
    status_storm_size = scaled(6, 24)  # on status writes only (spec writes come first and take the other)
    wanted = wanted_specs(MODEL)
    bystanders = seed_bystanders(api)
    log = EventLog(api).start()
    proxy = TimedFaultProxy(plane, delay=(0.2, 0.5)).start()
    kubeconfig = kubeconfig_via(plane, proxy, tmp_path / "proxied.kubeconfig")
    concurrency = scaled(4, 8)  # no restart to time here: more writers, a shorter delayed sync
    operator = launch(operators, kubeconfig, tmp_path, "h1-proxy", concurrency)
    sampler = Sampler(operator_counters(operator.get)).start()
    started = time.monotonic()
    try:
        wait(lambda: log.owned_count() >= len(wanted) // 3, operator, CONVERGE_WITHIN, "a third of the objects")
        throttle = {"status": 429, "reason": "TooManyRequests", "headers": {"Retry-After": f"{retry_after:g}"}}
        storm = proxy.first(Rule("PATCH", "/hypernodes", times=storm_size, **throttle))  # type: ignore[arg-type]
        status_storm = proxy.first(Rule("PATCH", "/status", times=status_storm_size, **throttle))  # type: ignore[arg-type]
        storm_mid_sync = log.owned_count() < len(wanted)
        converge(api, wanted, operator)
        seconds = time.monotonic() - started
        ops = operator_figures(sampler.total())
        lost, duplicated = check_outcome(api, log, wanted, ops)
        rss = peak_rss_mib(operator)
        with proxy._lock:
            seen = list(proxy.requests)
        assert (storm.hits, status_storm.hits) == (storm_size, status_storm_size), "the storm did not blow out"
        throttled = storm.hits + status_storm.hits

        # Per object and kind (spec or status): write attempts by answer; and each 429's next request.
        answers: dict[tuple[str, bool], collections.Counter[int]] = collections.defaultdict(collections.Counter)
        early: dict[str, list[float]] = {"spec": [], "status": []}
        for index, request in enumerate(seen):
            target = hypernode_of(request.path)
            if target is None or request.method != "PATCH":
                continue
            answers[target][request.status] += 1
            if request.status != 429:
                continue
            # The spec writer's retry starts with a fresh GET of the object; the status writer's is a PATCH.
            later = [r.received for r in seen[index + 1 :] if hypernode_of(r.path) == target
                     and r.method in ("GET", "PATCH") and r.received > request.received]  # fmt: skip
            if later and min(later) - request.received < retry_after - 0.05:
                early["status" if target[1] else "spec"].append(round(min(later) - request.received, 2))
        spec = {name: found for (name, is_status), found in answers.items() if not is_status}
        status = {name: found for (name, is_status), found in answers.items() if is_status}
        writes = sum(sum(found.values()) for found in answers.values())
        figures.record(
            trials=1, model=MODEL, concurrency=concurrency, faults_injected=proxy.delayed + throttled,
            delayed_requests=proxy.delayed, delay_seconds=[0.2, 0.5], throttled_429=throttled,
            retry_after_seconds=retry_after, storm_mid_sync=storm_mid_sync, objects_checked=len(wanted),
            lost=lost, duplicated=duplicated, peak_rss_mib=rss,
            writes=writes, spec_writes_max_per_object=max(sum(f.values()) for f in spec.values()),
            status_writes_max_per_object=max(sum(f.values()) for f in status.values()),
            retry_after_early_spec=len(early["spec"]), retry_after_early_status=len(early["status"]),
            status_retry_gaps_seconds=sorted(early["status"])[:10], operator=ops,
            seconds_to_converge=round(seconds, 1),
        )  # fmt: skip
        assert storm_mid_sync, "the storm began after the sync had ended"
        assert ops["failures"] == 0, f"objects failed under a storm shorter than the retry budget: {ops}"
        # Exactly one successful spec write per object (no lost answers here: nothing was left unanswered),
        # and no more attempts than one plus its 429s, never more than the policy's attempts.
        assert set(spec) == set(wanted), "spec writes for objects not wanted, or none for a wanted one"
        for name, found in spec.items():
            tries, done = sum(found.values()), sum(n for code, n in found.items() if 200 <= code < 300)
            assert done == 1, f"{name}: spec written {done} times ({dict(found)})"
            assert tries == 1 + found[429] <= POLICY.attempts, f"{name}: {tries} spec writes ({dict(found)})"
        # Status: once Synced, written again only after a 429 or a conflict (409: recomputed from the watch).
        assert set(status) == set(wanted), "status writes for objects not wanted, or none for a wanted one"
        for name, found in status.items():
            tries, done = sum(found.values()), sum(n for code, n in found.items() if 200 <= code < 300)
            assert done == 1 and tries == 1 + found[429] + found[409], f"{name}: status writes {dict(found)}"
        assert not early["spec"], f"spec retries sooner than Retry-After ({retry_after:g}s): {early['spec']}"
        assert not early["status"], f"status retries sooner than Retry-After ({retry_after:g}s): {early['status']}"
        figures.record(bystanders_checked=bystanders.check())
    finally:
        sampler.total()
        log.stop()
        operator.stop()
        proxy.reset()
        proxy.stop()
