"""Operator faults (issue 13, item 2), each against a real API server of this module's own.

1. SIGKILL at seeded random points of a sync, trial after trial: each restart converges to exactly
   the desired state, writing only what was not yet right, and nothing at rest; a watch sees no
   state with a node in two leaves or a HyperNode with two parents, across every kill.
2. The leader SIGKILLed in the middle of applying a large snapshot: the standby takes over and
   finishes it, exactly, writing only what was left.
3. The leader paused (SIGSTOP) past its lease while its writes are held in flight by a proxy:
   nothing it sent lands after the new leader's first write (updates and deletes: refused by their
   resourceVersion; creates: by the writer fence, installed as deployed); resumed (SIGCONT), it
   stands down without writing.

Operators are separate processes (``volcano-topology run``). The seed is printed and recorded;
``VOLCANO_TOPOLOGY_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.faultproxy import WRITE_METHODS, FaultProxy, Rule, Seen
from tests.integration import watcher as watcher_module
from tests.integration.operator_harness import OperatorProcess, write_config
from tests.integration.reliability._operator import (
    SOURCE,
    ServerCounts,
    SpecChecks,
    Transition,
    delete_owned,
    desired,
    owned,
    problems,
    shipped,
    spec_written,
    variant,
    wait_until,
    write_model,
)
from tests.integration.reliability.conftest import Figures, scaled, seed_bystanders
from tests.integration.watcher import StateWatcher
from tests.integration.writer_fence import WriterFence
from volcano_topology import kube
from volcano_topology.controlplane.cluster import LocalControlPlane

MODEL = scaled("medium-1024", "large-16384")  # the largest emulated model at the full size
TRIALS = scaled(3, 10)
SEED = int(os.environ.get("VOLCANO_TOPOLOGY_SEED") or random.SystemRandom().randrange(2**32))
CONVERGE = scaled(90.0, 240.0)  # upper bounds of waits, never asserted as timings
AT_REST = scaled(2.0, 3.0)  # seconds watched after convergence: no write at all
# Lease, renew deadline, retry period, request timeout: renewDeadline + requestTimeout < leaseDuration.
LEASE, RENEW, RETRY, REQUEST_TIMEOUT = scaled((4.0, 2.5, 0.25, 1.0), (8.0, 4.0, 1.0, 3.0))
SHARE = scaled((0.2, 0.5), (0.05, 0.15))  # of the leaves whose nodes move in a transition: 16-77 of 512 in full
HOLD = REQUEST_TIMEOUT * 0.8  # how long the proxy holds each of the paused leader's writes: inside its timeout

WRITES = "volcano_topology_writes_total"
STATUS_WRITES = "volcano_topology_status_writes_total"


@pytest.fixture
def plane(private_control_plane: LocalControlPlane) -> LocalControlPlane:
    return private_control_plane


@pytest.fixture
def api(plane: LocalControlPlane) -> Iterator[client.ApiClient]:
    api = kube.api_client(plane.kubeconfig)
    delete_owned(api)
    yield api
    delete_owned(api)
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(autouse=True)
def checks(monkeypatch: pytest.MonkeyPatch) -> SpecChecks:
    """The StateWatcher's checks, skipped for events that change no spec (status writes): same answers."""
    found = SpecChecks()
    monkeypatch.setattr(watcher_module, "moment_problems", found)
    return found


@pytest.fixture
def operators() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        if operator.process is not None and operator.process.poll() is None:
            operator.process.send_signal(signal.SIGCONT)  # a paused one would not die of SIGTERM
            operator.stop(signal.SIGKILL)


@pytest.fixture
def proxies(plane: LocalControlPlane) -> Iterator[list[FaultProxy]]:
    made: list[FaultProxy] = []
    yield made
    for proxy in made:
        proxy.release()
        proxy.stop()


def launch(operators: list[OperatorProcess], kubeconfig: Path, workdir: Path, config: Path, identity: str,
           ) -> OperatorProcess:  # fmt: skip
    operator = OperatorProcess(kubeconfig, workdir, config=config, identity=identity).start()
    operators.append(operator)
    return operator


def alive(operator: OperatorProcess) -> Any:
    def check() -> None:
        if operator.process is not None and operator.process.poll() is not None:
            raise AssertionError(f"{operator.identity} exited ({operator.process.returncode}):\n{operator.tail()}")

    return check


def emulated_entry(model_file: Path, watch: bool = False) -> dict[str, Any]:
    return {"source": SOURCE, "interval": "5s", "config": {"modelFile": str(model_file), "watchModelFile": watch}}


def election(lease: str) -> dict[str, Any]:
    return {"enabled": True, "leaseName": lease, "namespace": "default", "leaseDuration": f"{LEASE:g}s",
            "renewDeadline": f"{RENEW:g}s", "retryPeriod": f"{RETRY * 1000:g}ms"}  # fmt: skip


def lease_holder(api: client.ApiClient, name: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, "default")
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    holder: str | None = lease.spec.holder_identity if lease.spec is not None else None
    return holder


def kill_after(operator: OperatorProcess, writes: float, within: float) -> tuple[float, float, float | None]:
    """SIGKILL ``operator`` as soon as its spec writes reach ``writes``; (seconds since its start, writes seen,
    seconds until its first write was seen)."""
    started = time.monotonic()
    seen = 0.0
    first: float | None = None
    while seen < writes:
        alive(operator)()
        assert time.monotonic() - started < within, f"{operator.identity} never reached {writes} writes"
        seen = operator.metric(WRITES)
        if seen > 0 and first is None:
            first = time.monotonic() - started
        if seen < writes:
            time.sleep(0.02)
    assert operator.process is not None
    operator.process.send_signal(signal.SIGKILL)
    operator.process.wait(10)
    return time.monotonic() - started, seen, first


def kill_at(operator: OperatorProcess, seconds: float) -> float:
    """SIGKILL ``operator`` ``seconds`` after it was started, whatever it is doing (start-up included)."""
    assert operator.process is not None
    time.sleep(max(0.0, seconds - (time.monotonic() - operator.started_at)))
    alive(operator)()
    operator.process.send_signal(signal.SIGKILL)
    operator.process.wait(10)
    return time.monotonic() - operator.started_at


def converge(api: client.ApiClient, want: dict[str, dict[str, Any]], operator: OperatorProcess) -> float:
    return wait_until(lambda: not problems(owned(api), want), CONVERGE, f"the exact state ({operator.identity})",
                      every=scaled(0.3, 1.0), alive=[alive(operator)])  # fmt: skip


def quiet(counts: ServerCounts, *operators: OperatorProcess) -> int:
    """Write requests (spec and status, as the API server counted them) over ``AT_REST`` seconds at rest."""
    counts.mark()
    before = [(o.metric(WRITES), o.metric(STATUS_WRITES)) for o in operators]
    time.sleep(AT_REST)
    after = [(o.metric(WRITES), o.metric(STATUS_WRITES)) for o in operators]
    server = counts.since()
    assert before == after, f"operator write counters moved at rest: {before} -> {after}"
    return server["spec"] + server["status"]


# -- 1. SIGKILL at random points of a sync --------------------------------------------------------


@pytest.mark.timeout(int(scaled(240, 900)))
def test_sigkill_at_random_points_of_a_sync_then_restart_converges_without_needless_writes(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], figures: Figures,
    checks: SpecChecks, tmp_path: Path,
) -> None:  # fmt: skip
    rng = random.Random(SEED)
    print(f"seed {SEED} (VOLCANO_TOPOLOGY_SEED={SEED} replays it), model {MODEL}, {TRIALS} trials")
    bystanders = seed_bystanders(api)
    base = shipped(MODEL)
    model_file = tmp_path / "model.yaml"
    config = write_config(tmp_path / "config.yaml", [emulated_entry(model_file)], concurrency=8)
    counts = ServerCounts(plane)
    watcher = StateWatcher(api, SOURCE).start()
    started = time.monotonic()
    kill_points: list[float] = []
    rows: list[dict[str, Any]] = []
    checked = needless = startup_kills = 0
    first_write: float | None = None  # seconds from start to the first write, in the last mid-sync trial
    want: dict[str, dict[str, Any]] = {}
    try:
        for trial in range(TRIALS):
            model = variant(
                base, rng, share=SHARE
            )  # trial 0 from empty; every later one from the previous trial's state
            want = desired(model)
            write_model(model_file, model)
            before = Transition.of(owned(api), want)
            assert before.differing, "the trial has something to sync"
            target = 1 + int(rng.uniform(0.05, 0.95) * (len(before.differing) - 1))

            # Every third trial dies during start-up: at a random moment before the first write the last trial
            # took to make (importing, reading the configuration, the caches' LIST, the first scan, planning).
            early = trial % 3 == 1 and first_write is not None
            early_counts = ServerCounts(plane).mark()
            killed = launch(operators, plane.kubeconfig, tmp_path, config, f"trial{trial}-killed")
            if early and first_write is not None:
                killed_at = kill_at(killed, rng.uniform(0.1, 0.8) * first_write)
                writes_at_kill = float(early_counts.since()["spec"])
                startup_kills += writes_at_kill == 0
            else:
                killed_at, writes_at_kill, first_write = kill_after(killed, target, CONVERGE)
            time.sleep(0.5)  # anything the dead process had fully sent has landed
            partial = owned(api)
            left = Transition.of(partial, want)
            assert left.differing or left.status_due, f"trial {trial}: killed after the sync, not during it"
            counts.mark()

            restarted = launch(operators, plane.kubeconfig, tmp_path, config, f"trial{trial}-restarted")
            seconds = converge(api, want, restarted)
            server = counts.since()
            final = owned(api)
            written = spec_written(partial, final)
            wrong_names = sorted(written - left.differing)
            own_writes = restarted.metric(WRITES)
            over = max(0, server["spec"] - left.bound)
            at_rest = quiet(counts, restarted)
            needless += len(wrong_names) + over + at_rest
            checked += len(final)
            kill_points.append(round(killed_at, 2))
            row = {"trial": trial, "differing_at_start": len(before.differing),
                   "kill_after_writes": int(writes_at_kill), "kill_s": round(killed_at, 2), "early": early,
                   "differing_at_restart": len(left.differing),
                   "write_bound": left.bound, "status_due": len(left.status_due), "spec_writes": server["spec"],
                   "operator_writes": int(own_writes), "status_writes": server["status"],
                   "converged_s": round(seconds, 1), "at_rest_writes": at_rest}  # fmt: skip
            rows.append(row)
            print(row)
            assert not wrong_names, f"trial {trial}: wrote objects that were already right: {wrong_names[:10]}"
            assert server["spec"] <= left.bound, f"trial {trial}: {server['spec']} spec writes for {left.bound}"
            assert own_writes <= left.bound
            assert server["status"] <= 2 * len(left.status_due), f"trial {trial}: status writes {server}"
            assert at_rest == 0, f"trial {trial}: {at_rest} writes at rest"
            restarted.stop()
    finally:
        watcher.stop()
        figures.record(
            model=MODEL, seed=SEED, trials=len(rows), faults_injected=len(kill_points), kill_points=kill_points,
            objects_checked=checked, lost=len(problems(owned(api), want)) if rows else None,
            states_checked=watcher.states, bad_states=watcher.bad_states(),
            needless_writes=needless, spec_writes=sum(r["spec_writes"] for r in rows),
            write_bound=sum(r["write_bound"] for r in rows), status_writes=sum(r["status_writes"] for r in rows),
            seconds=round(time.monotonic() - started, 1), per_trial=rows, tree_checks_computed=checks.computed,
            tree_checks_reused=checks.reused, startup_kills=startup_kills,
        )  # fmt: skip
    assert watcher.bad_states() == 0, f"intermediate states broke the tree: {watcher.violations[:5]}"
    assert len(rows) == TRIALS
    assert startup_kills >= 1, f"no trial was killed before its first write: {rows}"
    figures.record(bystanders_checked=bystanders.check())


# -- 2. the leader killed during a snapshot apply ----------------------------------------------------


@pytest.mark.timeout(int(scaled(180, 420)))
def test_leader_killed_during_a_snapshot_apply_the_standby_finishes_it(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], figures: Figures,
    tmp_path: Path,
) -> None:  # fmt: skip
    rng = random.Random(SEED + 2)
    bystanders = seed_bystanders(api)
    base = shipped(MODEL)
    first, snapshot = variant(base, rng, share=SHARE), variant(base, rng, share=SHARE)
    model_file = write_model(tmp_path / "model.yaml", first)
    lease = f"vt-kill-{uuid.uuid4().hex[:6]}"
    config = write_config(tmp_path / "config.yaml", [emulated_entry(model_file, watch=True)], concurrency=8,
                          leaderElection=election(lease), requestTimeout=f"{REQUEST_TIMEOUT:g}s")  # fmt: skip
    counts = ServerCounts(plane)
    watcher = StateWatcher(api, SOURCE)  # started once the first state is there
    started = time.monotonic()
    try:
        a = launch(operators, plane.kubeconfig, tmp_path, config, "leader-a")
        a.wait(lambda: lease_holder(api, lease) == "leader-a", within=CONVERGE, what="a holds the lease")
        b = launch(operators, plane.kubeconfig, tmp_path, config, "standby-b")
        converge(api, desired(first), a)
        b.wait(lambda: b.ready().get("ready") is True, within=CONVERGE, what="the standby is ready (caches warm)")
        watcher.start()

        want = desired(snapshot)
        before = Transition.of(owned(api), want)
        target = 1 + int(rng.uniform(0.05, 0.95) * (len(before.differing) - 1))
        applied_before = a.metric(WRITES)
        write_model(model_file, snapshot)  # the new snapshot: the leader's provider scans it at once
        kill_at, writes_at_kill, _ = kill_after(a, applied_before + target, CONVERGE)
        killed = time.monotonic()
        time.sleep(0.5)
        partial = owned(api)
        left = Transition.of(partial, want)
        counts.mark()
        assert b.metric(WRITES) == 0 and b.metric(STATUS_WRITES) == 0, "a standby never writes"
        assert left.differing or left.status_due, "the leader was killed after the apply, not during it"

        b.wait(lambda: lease_holder(api, lease) == "standby-b", within=CONVERGE, what="b takes the lease")
        failover = time.monotonic() - killed
        seconds = converge(api, want, b)
        server = counts.since()
        final = owned(api)
        wrong_names = sorted(spec_written(partial, final) - left.differing)
        at_rest = quiet(counts, b)
        assert b.metric("volcano_topology_leader") == 1
    finally:
        watcher.stop()
    figures.record(
        model=MODEL, seed=SEED, trials=1, faults_injected=1, kill_points=[round(kill_at, 2)],
        kill_after_writes=int(writes_at_kill - applied_before), snapshot_writes_needed=len(before.differing),
        objects_checked=len(final), lost=len(problems(final, want)), states_checked=watcher.states,
        bad_states=watcher.bad_states(), differing_at_kill=len(left.differing), write_bound=left.bound,
        standby_spec_writes=server["spec"], standby_status_writes=server["status"],
        needless_writes=len(wrong_names) + max(0, server["spec"] - left.bound) + at_rest,
        failover_s=round(failover, 1), converged_s=round(seconds, 1), lease=[LEASE, RENEW, RETRY],
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    print(f"leader killed after {writes_at_kill - applied_before:.0f} writes of the snapshot ({len(before.differing)} "
          f"objects to change); standby led after {failover:.1f}s, converged {seconds:.1f}s later with "
          f"{server['spec']} spec writes (bound {left.bound}) and {server['status']} status writes")  # fmt: skip
    assert watcher.bad_states() == 0, f"intermediate states broke the tree: {watcher.violations[:5]}"
    assert not wrong_names, f"the standby wrote objects that were already right: {wrong_names[:10]}"
    assert server["spec"] <= left.bound
    assert at_rest == 0
    figures.record(bystanders_checked=bystanders.check())


# -- 3. the leader paused past its lease with writes in flight -----------------------------------------


def fault_proxy(plane: LocalControlPlane, proxies: list[FaultProxy]) -> FaultProxy:
    assert plane.pki is not None
    proxy = FaultProxy(plane.url, plane.pki.ca_cert, plane.pki.serving_cert, plane.pki.serving_key).start()
    proxies.append(proxy)
    return proxy


@dataclass
class Paused:
    """What one pause run saw; the lists are the paused leader's HyperNode writes as its own proxy saw them."""

    in_flight: list[Seen]  # sent before the pause, held across it (inside the request timeout)
    sent_after_resume: list[Seen]  # put on the wire only once the process ran again
    late: list[Seen]  # forwarded at or after the new leader's first write
    landed_late: list[Seen]  # ...and accepted (2xx) by the API server: landed after it
    after_standing_down: list[Seen]  # HyperNode or Lease writes once it had stood down
    holder: str | None
    lost: int
    bad_states: int
    figures: dict[str, Any]


def pause_the_leader(plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess],
                     proxies: list[FaultProxy], tmp_path: Path, first: dict[str, Any], snapshot: dict[str, Any],
                     model_name: str = MODEL) -> Paused:  # fmt: skip
    """A leads on ``first``; B stands by; the model becomes ``snapshot``; A is paused at its first write held by
    its proxy, past its lease; B takes over and converges; A is resumed and must stand down."""
    model_file = write_model(tmp_path / "model.yaml", first)
    lease = f"vt-pause-{uuid.uuid4().hex[:6]}"
    config = write_config(tmp_path / "config.yaml", [emulated_entry(model_file, watch=True)], concurrency=8,
                          leaderElection=election(lease), requestTimeout=f"{REQUEST_TIMEOUT:g}s")  # fmt: skip
    # One proxy per operator: what each proxy saw is what that operator sent.
    proxy_a, proxy_b = fault_proxy(plane, proxies), fault_proxy(plane, proxies)
    kubeconfig_a = plane.write_kubeconfig(tmp_path / "a.kubeconfig", plane.admin_token, "admin-a", server=proxy_a.url)
    kubeconfig_b = plane.write_kubeconfig(tmp_path / "b.kubeconfig", plane.admin_token, "admin-b", server=proxy_b.url)
    watcher = StateWatcher(api, SOURCE)  # started once the first state is there
    writer_fence = WriterFence(api, "default", lease)  # as deployed (deploy/base/writer-fence.yaml)
    started = time.monotonic()
    try:
        a = launch(operators, kubeconfig_a, tmp_path, config, "paused-a")
        a.wait(lambda: lease_holder(api, lease) == "paused-a", within=CONVERGE, what="a holds the lease")
        writer_fence.install().wait_active()
        b = launch(operators, kubeconfig_b, tmp_path, config, "standby-b")
        converge(api, desired(first), a)
        b.wait(lambda: b.ready().get("ready") is True, within=CONVERGE, what="the standby is ready (caches warm)")
        watcher.start()

        # From now on every HyperNode write of A's (spec or status) is held, then forwarded: in flight.
        holds = [proxy_a.add(Rule(verb, "/hypernodes/", action="delay", delay=HOLD, times=10**9))
                 for verb in ("PATCH", "DELETE", "PUT")]  # fmt: skip
        want = desired(snapshot)
        write_model(model_file, snapshot)
        wait_until(lambda: sum(r.hits for r in holds) > 0, CONVERGE, "a write of A's in flight", every=0.005,
                   alive=[alive(a)])  # fmt: skip
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        held_at_pause = sum(r.hits for r in holds)

        b.wait(lambda: lease_holder(api, lease) == "standby-b", within=CONVERGE, what="b takes the lease")
        took_over = time.monotonic() - paused
        seconds = converge(api, want, b)
        b.wait(lambda: b.metric("volcano_topology_writer_fence") == 1, within=CONVERGE,
               what="the new leader finds the writer fence in force")  # fmt: skip
        time.sleep(HOLD + REQUEST_TIMEOUT)  # anything of A's still held has been forwarded by now
        a.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        a.wait(lambda: a.get("/metrics")[0] == 200 and a.metric("volcano_topology_leader") == 0, within=CONVERGE,
               what="a stands down")  # fmt: skip
        # What passed the gate before the pause went out on the resume; from here on, nothing may.
        quiet_from = time.monotonic() + 0.5
        time.sleep(0.5 + max(AT_REST, 2 * RETRY + HOLD))
        final = owned(api)
        holder = lease_holder(api, lease)
    finally:
        watcher.stop()
        proxy_a.release()

    a_writes = [r for r in proxy_a.writes("/hypernodes") if r.forwarded is not None]
    b_writes = [r for r in proxy_b.writes("/hypernodes") if r.forwarded is not None]
    assert b_writes, "the new leader wrote"
    b_first = min(r.forwarded for r in b_writes if r.forwarded is not None)
    run = Paused(
        in_flight=[r for r in a_writes if r.received < paused <= (r.forwarded or 0.0)],
        sent_after_resume=[r for r in a_writes if r.received >= resumed],
        late=[r for r in a_writes if (r.forwarded or 0.0) >= b_first],
        landed_late=[r for r in a_writes if (r.answered or 0.0) >= b_first and 200 <= r.status < 300],
        after_standing_down=[r for r in proxy_a.requests if r.method in WRITE_METHODS and r.received >= quiet_from
                             and ("/hypernodes" in r.path or "/leases" in r.path) and not r.dry_run],
        holder=holder, lost=len(problems(final, want)), bad_states=watcher.bad_states(), figures={},
    )  # fmt: skip
    before_b = [r for r in a_writes if (r.answered or 0.0) < b_first]
    last_a = max((r.answered or 0.0) for r in before_b) if before_b else paused
    run.figures = dict(  # noqa: C408 - keyword arguments, as figures.record takes them
        # faults: SIGSTOP, SIGCONT and each write held across the pause
        model=model_name, seed=SEED, trials=1, faults_injected=2 + len(run.in_flight),
        held_at_pause=held_at_pause, a_writes_in_flight_at_pause=len(run.in_flight),
        a_writes_forwarded=len(a_writes), a_writes_forwarded_after_b_first=len(run.late),
        a_writes_sent_after_resume=len(run.sent_after_resume),
        a_writes_sent_after_resume_statuses=sorted(r.status for r in run.sent_after_resume),
        a_creates_fenced=sum(r.status == 403 and r.method == "PATCH" for r in run.late),
        a_writes_landed_after_b_first=len(run.landed_late), a_writes_after_standing_down=len(run.after_standing_down),
        margin_s=round(b_first - last_a, 2), takeover_s=round(took_over, 1), converged_s=round(seconds, 1),
        b_writes=len(b_writes), objects_checked=len(final), lost=run.lost, states_checked=watcher.states,
        bad_states=run.bad_states, lease=[LEASE, RENEW, RETRY], request_timeout=REQUEST_TIMEOUT, hold_s=HOLD,
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    resumed_sends = [(r.method, r.name, r.status) for r in run.sent_after_resume]
    print(f"A paused with {len(run.in_flight)} writes held; the last of A's before B's first write answered "
          f"{b_first - last_a:.2f}s before it; B led {took_over:.1f}s after the pause, converged {seconds:.1f}s later; "
          f"after SIGCONT A sent {len(run.sent_after_resume)} writes {resumed_sends}, "
          f"{len(run.after_standing_down)} after standing down")  # fmt: skip
    return run


@pytest.mark.timeout(int(scaled(180, 420)))
def test_leader_paused_past_its_lease_lands_nothing_after_the_new_leaders_first_write(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], proxies: list[FaultProxy],
    figures: Figures, tmp_path: Path,
) -> None:  # fmt: skip
    rng = random.Random(SEED + 3)
    bystanders = seed_bystanders(api)
    base = shipped(MODEL)
    # Updates only (no leaf removed, none added): every write of the transition carries a resourceVersion.
    # A create carries none: see test_a_paused_leaders_late_creates_land_after_the_new_leaders_first_write.
    first, snapshot = variant(base, rng, share=SHARE, remove=False), variant(base, rng, share=SHARE, remove=False)
    run = pause_the_leader(plane, api, operators, proxies, tmp_path, first, snapshot)
    figures.record(**run.figures)
    assert run.in_flight, "a write of A's was held in flight across the pause"
    assert not [r for r in run.in_flight if r in run.late], "a held write was forwarded after the takeover"
    assert not run.landed_late, f"writes of the paused leader landed after the new leader's first: {run.landed_late}"
    # Only requests already past the gate before the pause, at most one per worker thread (spec 8, status 8);
    # each carries a resourceVersion, so the server refuses it (asserted above: none landed).
    assert len(run.sent_after_resume) <= 16, f"the resumed leader sent {len(run.sent_after_resume)} writes"
    assert not run.after_standing_down, f"the old leader wrote after standing down: {run.after_standing_down}"
    assert run.holder == "standby-b"
    assert run.lost == 0
    assert run.bad_states == 0
    figures.record(bystanders_checked=bystanders.check())


@pytest.mark.timeout(int(scaled(180, 420)))
def test_a_paused_leaders_late_creates_are_refused_by_the_writer_fence(
    plane: LocalControlPlane, api: client.ApiClient, operators: list[OperatorProcess], proxies: list[FaultProxy],
    figures: Figures, tmp_path: Path,
) -> None:  # fmt: skip
    """The same pause while the leader creates: from one leaf to the whole model, every write a create.

    A create carries no resourceVersion: what passed the gate before the pause is sent on the resume, in A's
    term, and only the writer fence (deploy/base/writer-fence.yaml) keeps it from landing."""
    bystanders = seed_bystanders(api)
    base = shipped("medium-1024")  # the fence does not depend on the size
    first = {**base, "switches": [s for s in base["switches"] if s["name"] in ("core-0", "spine-00", "leaf-000")]}
    run = pause_the_leader(plane, api, operators, proxies, tmp_path, first, base, "medium-1024")
    figures.record(**run.figures, bystanders_checked=bystanders.check())
    assert run.lost == 0 and run.bad_states == 0 and run.holder == "standby-b"
    assert run.sent_after_resume, "creates of A's passed the gate before the pause and went out on the resume"
    refused = [r for r in run.late if r.method == "PATCH" and r.status == 403]
    assert refused, f"and the fence refused them: {[(r.method, r.name, r.status) for r in run.late]}"
    assert not run.landed_late, f"writes of the paused leader landed after the new leader's first: {run.landed_late}"
    assert not run.after_standing_down, f"the old leader wrote after standing down: {run.after_standing_down}"
