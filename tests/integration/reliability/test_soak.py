"""Issue 13, item 6: the long soak.

At the 16,384-node model (``make soak``: ``VOLCANO_TOPOLOGY_SOAK_MINUTES``, 30 by default), fabric
changes every 3 s in bursts of 5 (nodes moved, a leaf removed, a leaf re-cabled, everything restored),
none waiting for the one before to land; the API server restarted every few minutes and the leader
SIGKILLed every few minutes (a new standby started each time), each fault right after a burst's
first change. Shown: after EVERY burst a LIST equals the desired state of its last change within a
bound (each change derives from the one before, so that state carries every change a later one did
not undo); no state the watch saw broke the strict tree; the final state exact; the bystanders
untouched; each operator process's memory (VmRSS) and open file descriptors flat over its life.
The writer fence is installed as deployed.

Three operator processes at a time: two replicas in one leader election for the ``emulated`` source
(the failovers), and a third operator for a second source (``soak-marathon``: the emulated provider
under another name, the same model file with a name prefix) that runs for the whole soak through
every change and restart, so one process's memory is followed for the full length of the run.

``make test`` runs the same scenario at the fast size: the 1,024-node model, about 45 s, changes
every 2 s in bursts of 3, one API-server restart, one failover.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bench.operator_process import provider_dir, write_model
from tests.integration.operator_harness import OperatorProcess, write_config
from tests.integration.reliability import _soak
from tests.integration.reliability.conftest import FULL, OUT, Figures, seed_bystanders
from tests.integration.writer_fence import WriterFence
from volcano_topology import kube
from volcano_topology.controlplane.cluster import LocalControlPlane

pytestmark = pytest.mark.soak

SOURCE = "emulated"
MARATHON = "soak-marathon"  # the emulated provider under a second name: one process for the whole soak
PREFIX = "m-"
LEASE = "vt-soak"
SEED = 13


@dataclass(frozen=True)
class Size:
    model: str
    seconds: float
    change_every: float  # seconds between the changes of a burst
    burst: int  # changes per burst; the state must converge after each burst
    restarts: tuple[float, ...]  # seconds into the soak
    failovers: tuple[float, ...]
    down: float  # seconds the API server stays stopped
    bound: float  # each change converged within this (a bound, not a timing claim)
    list_every: float  # the LIST that checks convergence, this often
    sample_every: float
    warm: float  # flatness: the early window starts this long after a process started...
    window: float  # ...and is this long; the late window is the process's last `window` seconds
    min_window: float  # processes too short-lived for two such windows are recorded, not judged
    # Open fds the late window may have beyond 1.25x the early one. At the fast size the early window can fall
    # inside the API-server outage, when the connection pools are empty (up to ~15 connections come back after).
    fd_slack: float


def size() -> Size:
    if not FULL:
        return Size("medium-1024", 20, 2.0, 3, (4.0,), (10.0,), 2.0, 60.0, 0.5, 1.0, 5.0, 10.0, 5.0, 16.0)
    seconds = 60 * float(os.environ.get("VOLCANO_TOPOLOGY_SOAK_MINUTES") or 30)
    restarts = tuple(float(t) for t in range(90, int(seconds) - 60, 180))  # every 3 minutes
    failovers = tuple(float(t) for t in range(150, int(seconds) - 60, 300))  # every 5 minutes
    return Size("large-16384", seconds, 3.0, 5, restarts, failovers, 5.0, 240.0, 1.0, 10.0, 120.0, 300.0, 60.0, 5.0)


@pytest.fixture
def admin(private_control_plane: LocalControlPlane) -> Iterator[client.ApiClient]:
    api = kube.api_client(private_control_plane.kubeconfig)
    yield api
    api.close()  # type: ignore[no-untyped-call]


def lease_holder(api: client.ApiClient) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, "default", _request_timeout=3)
    except Exception:  # no Lease yet, or the API server is restarting
        return None
    holder: str | None = lease.spec.holder_identity if lease.spec else None
    return holder


@pytest.mark.timeout(size().seconds + 900)  # the soak is longer than the suite's 300 s per test
def test_soak(private_control_plane: LocalControlPlane, admin: client.ApiClient, tmp_path: Path,
              figures: Figures) -> None:  # fmt: skip
    plan = size()
    plane = private_control_plane
    rng = random.Random(SEED)
    bystanders = seed_bystanders(admin)
    base = _soak.shipped_model(plan.model)
    model_file = tmp_path / "model.yaml"
    write_model(model_file, base)
    election = {"enabled": True, "leaseName": LEASE, "namespace": "default",
                "leaseDuration": "8s", "renewDeadline": "5s", "retryPeriod": "1s"}  # fmt: skip
    watched = {"modelFile": str(model_file), "watchModelFile": True}
    pair_config = write_config(tmp_path / "pair.yaml", [{"source": SOURCE, "interval": "10s", "config": watched}],
                               leaderElection=election, requestTimeout="2s")  # fmt: skip
    marathon_config = write_config(
        tmp_path / "marathon.yaml",
        [{"source": MARATHON, "interval": "10s", "config": {**watched, "namePrefix": PREFIX}}],
        requestTimeout="2s",
    )
    providers = provider_dir(tmp_path / "providers", [MARATHON])

    running: dict[str, OperatorProcess] = {}
    sampler = _soak.Sampler(plan.sample_every, leader=lambda: lease_holder(admin))
    serial = iter(range(1, 10_000))

    def launch(config: Path, identity: str, provider_path: Path | None = None, elected: bool = True) -> OperatorProcess:
        operator = OperatorProcess(plane.kubeconfig, tmp_path, config=config, identity=identity,
                                   provider_path=provider_path, extra=["--poll", "5"]).start()  # fmt: skip
        assert operator.process is not None
        running[identity] = operator
        sampler.add(identity, operator.process.pid, elected)
        return operator

    def replica() -> OperatorProcess:
        return launch(pair_config, f"replica-{next(serial)}")

    def wanted_for(model: dict[str, Any]) -> dict[str, Any]:
        return _soak.desired(model, SOURCE) | _soak.desired(model, MARATHON, PREFIX)

    sources = {SOURCE, MARATHON}
    counts = {"changes": 0, "bursts": 0, "converged": 0, "restarts": 0, "failovers": 0, "objects_checked": 0,
              "lists": 0, "failed_lists": 0}  # fmt: skip
    kinds: dict[str, int] = {}
    seconds: list[float] = []
    fault_seconds: dict[str, list[float]] = {"restart": [], "failover": []}  # from the change's write
    unconverged: list[str] = []
    victims: list[str] = []
    holders: list[str] = []
    tree: _soak.TreeWatch | None = None
    figures.record(model=plan.model, seed=SEED, lost=None)
    progress = OUT / "soak-progress.log"
    OUT.mkdir(parents=True, exist_ok=True)
    progress.write_text(f"soak {plan}\n")
    writer_fence = WriterFence(admin, "default", LEASE).install()  # as deployed: the pair's creates are fenced
    try:
        launch(marathon_config, "marathon", providers, elected=False)
        first = replica()
        replica()
        sampler.start()
        wanted = wanted_for(base)
        cold = _soak.wait_converged(admin, wanted, sources, plan.bound, plan.list_every)
        assert cold.seconds is not None, f"the cold sync did not converge: {cold.problems[:5]}\n{first.tail()}"
        writer_fence.wait_active()
        tree = _soak.TreeWatch(admin, SOURCE).start()
        current = base
        restarts, failovers = list(plan.restarts), list(plan.failovers)
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < plan.seconds or restarts or failovers:  # every fault, however slow
            elapsed = time.monotonic() - started
            fault = None
            if failovers and elapsed >= failovers[0]:
                fault = "failover"
                failovers.pop(0)
            elif restarts and elapsed >= restarts[0]:
                fault = "restart"
                restarts.pop(0)
            leader = None
            if fault == "failover":
                leader = _wait_holder(admin, running, within=plan.bound)
                assert leader is not None, "no live replica holds the Lease before a failover"
            # A burst: a change every `change_every` seconds, none waiting for the last to land; the fault
            # (if any) right after the first. Then the state must converge to the burst's last model, which
            # carries every change of the burst that a later one did not undo (each derives from the last).
            burst_kinds: list[str] = []
            for i in range(plan.burst):
                tick = time.monotonic()
                kind, current = _soak.next_model(step, current, base)
                kinds[kind] = kinds.get(kind, 0) + 1
                burst_kinds.append(kind)
                write_model(model_file, current)
                counts["changes"] += 1
                step += 1
                if i == 0 and leader is not None:  # fault == "failover"
                    time.sleep(rng.uniform(0.3, 1.5))  # the change being applied: the leader dies mid-plan
                    sampler.gone(leader)
                    running.pop(leader).stop(signal.SIGKILL)
                    victims.append(leader)
                    replica()  # the new standby
                    counts["failovers"] += 1
                elif i == 0 and fault == "restart":
                    time.sleep(rng.uniform(0.0, 1.0))
                    plane.stop_apiserver()
                    time.sleep(plan.down)
                    plane.start_apiserver()
                    counts["restarts"] += 1
                if i < plan.burst - 1:
                    time.sleep(max(0.0, plan.change_every - (time.monotonic() - tick)))
            written = time.monotonic()
            wanted = wanted_for(current)
            done = _soak.wait_converged(admin, wanted, sources, plan.bound, plan.list_every)
            counts["bursts"] += 1
            counts["lists"] += done.lists
            counts["failed_lists"] += done.failed_lists
            if done.seconds is None:
                unconverged.append(f"burst ending at change {step - 1} ({burst_kinds}, fault {fault}): "
                                   f"{done.problems[:5]}")  # fmt: skip
                if len(unconverged) >= 3:
                    break
            else:
                counts["converged"] += plan.burst
                counts["objects_checked"] += len(wanted)
                seconds.append(round(time.monotonic() - written, 2))  # from the burst's last model file write
                if fault:
                    fault_seconds[fault].append(seconds[-1])
            if fault == "failover":
                holder = _wait_holder(admin, running, within=plan.bound)
                assert holder is not None and holder != victims[-1], f"no new leader after {victims[-1]} died"
                holders.append(holder)
            with progress.open("a") as out:  # to follow a long soak from outside: tail -f
                rss = {n: x.samples[-1][1] for n, x in sampler.series.items() if x.samples and x.ended is None}
                took = time.monotonic() - written
                out.write(f"{time.monotonic() - started:7.1f}s changes {step - plan.burst}-{step - 1} {burst_kinds} "
                          f"fault={fault} converged={done.seconds is not None} in {took:.1f}s rss={rss}\n")  # fmt: skip
        minutes = (time.monotonic() - started) / 60

        # The end: the final model once more, then the exact state, the bystanders, a quiet last look.
        final = _soak.wait_converged(admin, wanted_for(current), sources, plan.bound, plan.list_every)
        assert final.seconds is not None, f"the final state is not exact: {final.problems[:5]}"
        items = _soak.list_hypernodes(admin)
        assert _soak.differences(items, wanted_for(current), sources) == []
        bystanders_checked = bystanders.check()
        exits = {name: op.process.poll() for name, op in running.items() if op.process is not None}
        assert all(code is None for code in exits.values()), f"an operator exited on its own: {exits}"
    finally:
        sampler.stop()
        for operator in running.values():
            operator.stop()
        if tree is not None:
            tree.stop()

    processes = {name: _soak.summary(series, started, plan.warm, plan.window, plan.min_window, plan.fd_slack)
                 for name, series in sampler.series.items()}  # fmt: skip
    judged = [(name, stint) for name, p in processes.items() for stint in p["stints"] if stint["flat"] is not None]
    lost = counts["changes"] - counts["converged"]
    figures.record(
        trials=counts["changes"], faults_injected=counts["restarts"] + counts["failovers"],
        objects_checked=counts["objects_checked"] + bystanders_checked, lost=lost,
        minutes=round(minutes, 1), changes=counts["changes"], converged=counts["converged"],
        bursts=counts["bursts"], burst=plan.burst, change_every_s=plan.change_every,
        changes_per_minute=round(counts["changes"] / minutes, 1) if minutes else None,
        restarts=counts["restarts"], failovers=counts["failovers"], change_kinds=kinds,
        leader_kills=victims, leaders_after=holders, leaders_seen=sampler.holders,
        leader_changes_unforced=max(0, len(sampler.holders) - 1 - counts["failovers"]),
        converge_s_median=round(statistics.median(seconds), 2) if seconds else None,
        converge_s_max=max(seconds, default=None), restart_converge_s=fault_seconds["restart"],
        failover_converge_s=fault_seconds["failover"], lists=counts["lists"], failed_lists=counts["failed_lists"],
        watch_states=tree.states if tree else 0, watch_bad_states=tree.bad_states() if tree else None,
        watch_reconnects=tree.reconnects if tree else 0, watch_relists=tree.relists if tree else 0,
        watch_errors=tree.errors if tree else {},
        bystanders_checked=bystanders_checked, processes=processes,
        stints_judged=len(judged), stints_flat=sum(1 for _, stint in judged if stint["flat"]),
        **{f"{k}_{name}": processes.get(name, {}).get(k) for name in ("marathon",)
           for k in ("rss_mib_start", "rss_mib_end", "rss_mib_max", "fds_start", "fds_end")},
    )  # fmt: skip
    with progress.open("a") as out:  # the figures here too: figures.jsonl is shared (make reliability empties it)
        out.write("figures " + json.dumps(figures.values, sort_keys=True, default=str) + "\n")
    assert not unconverged, f"changes not converged within {plan.bound:.0f}s: {unconverged}"
    assert lost == 0
    assert counts["restarts"] == len(plan.restarts) and counts["failovers"] == len(plan.failovers)
    assert tree is not None and tree.states > 0 and tree.violations == [], tree.violations[:5]
    assert any(name == "marathon" for name, _ in judged), f"the marathon was not followed long enough: {processes}"
    grew = [(name, stint) for name, stint in judged if not stint["flat"]]
    assert not grew, f"memory or open fds grew: {grew}"


def _wait_holder(api: client.ApiClient, running: dict[str, OperatorProcess], within: float) -> str | None:
    """The Lease holder once it is a live replica of ours (after a kill or a restart, the lease moves)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        holder = lease_holder(api)
        process = running[holder].process if holder in running else None
        if holder is not None and process is not None and process.poll() is None:
            return holder
        time.sleep(0.25)
    return None
