"""Provider faults (issue 13, item 3): one real operator process runs a good provider beside bad ones.

Bad providers (tests/integration/reliability/_bad_providers.py) raise at start and mid-run, hang
(an async start that never yields anything and swallows cancellation; a blocking scan that pins its
thread), flood (100,000 events at the fast size, 1,000,000 at the full size, for a few names, as fast
as the bounded queue takes them) and emit garbage (not Events, malformed Events, invalid HyperNodes,
rule-breaking snapshots, a raising post-process hook, bad gauges). The good provider (emulated) must
converge and stay exact, each bad one is isolated as runner.py/writer.py promise, the operator's peak
RSS stays under a bound while flooding, every refused item gets a reply naming the object and the rule,
and nothing of the garbage is written. Bystanders are compared byte for byte.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bench.measure import reset_peak_rss, rss_kib
from tests.integration.conftest import cluster_hypernodes
from tests.integration.operator_harness import OperatorProcess, write_config
from tests.integration.reliability._bad_providers import (
    FINAL,
    FLOOD_LABEL,
    SENTINEL,
    bad_provider_dir,
    garbage_items,
    read_record,
)
from tests.integration.reliability.conftest import Figures, scaled, seed_bystanders
from volcano_topology import registry
from volcano_topology.api import HyperNode
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.sdk.scanning import as_hypernodes

MODEL = scaled("small-64", "medium-1024")
FLOOD_EVENTS = scaled(100_000, 1_000_000)
FLOOD_NAMES = 4
# What the flood may add to the operator's RSS: its bounded queue (256 events) and one coalesced batch cost
# almost nothing; 1,000,000 events kept (even sharing their HyperNodes, ~120 bytes each) would be > 100 MiB.
FLOOD_GROWTH_BOUND_MIB = 48
BAD = ("raise-at-start", "raise-later", "hang-async", "hang-scan", "flood", "garbage")
M = "volcano_topology_"


@pytest.fixture
def operators() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        if operator.process is not None and operator.process.poll() is None:
            operator.stop(signal.SIGKILL)


@pytest.fixture
def cleanup(hypernode_api: client.ApiClient) -> Iterator[None]:
    yield
    objects = client.CustomObjectsApi(hypernode_api)
    for source in ("emulated", *BAD):
        for name in cluster_hypernodes(hypernode_api, source):
            try:
                objects.delete_cluster_custom_object("topology.volcano.sh", "v1alpha1", "hypernodes", name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def expected_emulated() -> dict[str, HyperNode]:
    loaded, errors = registry.load(["emulated"])
    assert errors == []
    provider: Any = registry.instantiate(loaded["emulated"], {"modelFile": MODEL})
    return {h.name: h for h in as_hypernodes(provider.scan())}


def specs(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: obj["spec"] for name, obj in objects.items()}


def test_bad_providers_are_isolated_and_the_good_one_stays_exact(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    cleanup: None, tmp_path: Path, figures: Figures,
) -> None:  # fmt: skip
    bystanders = seed_bystanders(hypernode_api)
    records = {name: tmp_path / f"{name}.jsonl" for name in BAD}
    gate = tmp_path / "flood.go"
    entries: list[dict[str, Any]] = [{"source": "emulated", "interval": "1s", "config": {"modelFile": MODEL}}]
    for name in BAD:
        config: dict[str, Any] = {"record": str(records[name])}
        if name == "flood":
            config.update(events=FLOOD_EVENTS, names=FLOOD_NAMES, gate=str(gate))
        if name == "hang-async":
            config.update(swallowCancel=True)
        entries.append({"source": name, "config": config})
    config_file = write_config(tmp_path / "config.yaml", entries)
    providers = bad_provider_dir(tmp_path / "providers")
    operator = OperatorProcess(control_plane.kubeconfig, tmp_path, config=config_file, provider_path=providers)
    operators.append(operator.start())
    assert operator.process is not None
    pid = operator.process.pid
    want = expected_emulated()

    exact = {n: h.spec.to_dict() for n, h in want.items() if h.spec is not None}

    # The good provider: converged, exactly the model's desired state, beside the bad ones.
    operator.wait(lambda: specs(cluster_hypernodes(hypernode_api, "emulated")) == exact, within=120,
                  what="the emulated model, exact")  # fmt: skip

    # The flood, once the rest has settled: memory measured from here. Every event the provider sent reached
    # the writer (counted: none lost), and the final version of each name lands.
    baseline_mib = rss_kib(pid, "VmRSS") / 1024
    reset_peak_rss(pid)
    gate.touch()

    def flood_done() -> bool:
        sent = [r for r in read_record(records["flood"]) if r["kind"] == "sent"]
        return bool(sent) and operator.metric(M + "events_total", provider="flood") == sent[0]["events"]

    started = time.monotonic()
    operator.wait(flood_done, within=scaled(120, 600), what="every flood event received")
    flood_seconds = time.monotonic() - started

    def flood_final() -> bool:
        objects = cluster_hypernodes(hypernode_api, "flood")
        labels = [o["metadata"]["labels"][FLOOD_LABEL] for o in objects.values()]
        return len(objects) == FLOOD_NAMES and labels == [FINAL] * FLOOD_NAMES

    operator.wait(flood_final, within=60, what="the flood's final versions")
    peak_rss_mib = rss_kib(pid) / 1024
    sent = next(r for r in read_record(records["flood"]) if r["kind"] == "sent")

    # Garbage: one reply per item, naming the object and the rule; only the sentinel written.
    expected = [e for _, _, replies in garbage_items() for e in replies]
    operator.wait(lambda: SENTINEL in cluster_hypernodes(hypernode_api, "garbage"), what="the garbage sentinel")
    replies = [r for r in read_record(records["garbage"]) if r["kind"] == "reply"]
    unmatched = [e for e in expected if not any(_matches(r, e) for r in replies)]
    assert unmatched == [], f"replies missing for {unmatched}; got {replies}"
    assert set(cluster_hypernodes(hypernode_api, "garbage")) == {SENTINEL}, "garbage was written"
    assert operator.metric(M + "writer_errors_total", provider="garbage") == 0, operator.tail()
    for reply in replies:
        if reply["reason"] == "Invalid":
            assert reply["name"] and reply["rules"], f"an Invalid reply names the object and the rule: {reply}"

    # Raising providers: restarted with backoff, counted; what raise-later applied stays.
    operator.wait(lambda: operator.metric(M + "provider_restarts_total", provider="raise-at-start") >= 2
                  and operator.metric(M + "provider_restarts_total", provider="raise-later") >= 2,
                  within=60, what="restarts of the raising providers")  # fmt: skip
    later = cluster_hypernodes(hypernode_api, "raise-later")
    assert sorted(later) == [f"later-{i}" for i in range(4)]
    # Hanging: the blocking scan is abandoned at its timeout and its threads are counted, bounded.
    operator.wait(lambda: operator.metric(M + "scan_failures_total", provider="hang-scan") >= 3
                  and operator.metric(M + "hung_scan_threads", provider="hang-scan") == 2,
                  what="hung scans counted")  # fmt: skip
    scan_threads = sum(1 for r in read_record(records["hang-scan"]) if r["kind"] == "scan-thread")
    assert scan_threads == 2, "at most max_scan_threads threads are ever pinned"
    assert operator.metric(M + "provider_restarts_total", provider="hang-async") == 0
    assert cluster_hypernodes(hypernode_api, "hang-async") == {}

    # Bad gauges are left out, good ones exported, the scrape works.
    assert operator.metric(M + "provider_garbage_ok", provider="garbage") == 3
    assert "Not A Name" not in operator.get("/metrics")[1]

    # The good provider keeps its state exact while the bad ones go on failing: no write after convergence.
    writes = operator.metric(M + "writes_total", provider="emulated")
    restarts_before = operator.metric(M + "provider_restarts_total", provider="raise-later")
    operator.wait(lambda: operator.metric(M + "provider_restarts_total", provider="raise-later") > restarts_before,
                  within=60, what="another mid-run failure")  # fmt: skip
    assert operator.metric(M + "writes_total", provider="emulated") == writes, "needless writes"
    assert specs(cluster_hypernodes(hypernode_api, "emulated")) == exact
    assert sorted(cluster_hypernodes(hypernode_api, "raise-later")) == [f"later-{i}" for i in range(4)]
    restarts = {name: operator.metric(M + "provider_restarts_total", provider=name) for name in ("emulated", *BAD)}
    assert restarts["emulated"] == 0
    checked = bystanders.check()
    received = operator.metric(M + "events_total", provider="flood")
    flood_writes = operator.metric(M + "writes_total", provider="flood")
    superseded = operator.metric(M + "superseded_events_total", provider="flood")

    # SIGTERM: the provider that swallows cancellation is abandoned after its grace, the others drain, the lease
    # goes, "stopped" is logged, and the process exits by itself (the abandoned task and the pinned scan
    # threads get a bounded grace, volcano_topology/operator.py run_to_the_end and exit_within).
    assert operator.process is not None
    operator.process.send_signal(signal.SIGTERM)
    stopped = _wait_for_line(operator, "volcano_topology.operator: stopped", within=30)
    try:
        code = operator.process.wait(40)
    except subprocess.TimeoutExpired:
        code = operator.stop(signal.SIGKILL)
    log = operator.log.read_text(errors="replace")
    swallowed = sum(1 for r in read_record(records["hang-async"]) if r["kind"] == "swallowed-cancel")
    replies_received = sum(1 for name in BAD for r in read_record(records[name]) if r["kind"] == "reply")
    figures.record(
        trials=1, providers=1 + len(BAD), faults_injected=len(BAD) + len(expected) + sent["events"],
        events_sent=sent["events"], events_received=int(received), lost=int(sent["events"] - received),
        flood_seconds=round(flood_seconds, 1), flood_writes=int(flood_writes), flood_superseded=int(superseded),
        replies_received=replies_received, replies_expected=len(expected),
        baseline_rss_mib=round(baseline_mib, 1), peak_rss_mib=round(peak_rss_mib, 1),
        flood_rss_growth_mib=round(peak_rss_mib - baseline_mib, 1), restarts=restarts, hung_scan_threads=2,
        swallowed_cancellations=swallowed, logging_errors=log.count("--- Logging error ---"),
        objects_checked=len(want) + FLOOD_NAMES + 4 + 1, bystanders_checked=checked,
        shutdown_finished=stopped, exit_code=code, model=MODEL,
    )  # fmt: skip
    assert stopped, f"SIGTERM with a provider that swallows cancellation: shutdown did not finish\n{operator.tail()}"
    assert code == 0, f"the operator did not exit by itself after SIGTERM (exit code {code})\n{operator.tail()}"
    assert "provider hang-async did not stop" in log
    growth = peak_rss_mib - baseline_mib
    assert growth < FLOOD_GROWTH_BOUND_MIB, f"RSS grew {growth:.0f} MiB while flooding {sent['events']} events"


def _wait_for_line(operator: OperatorProcess, line: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if line in operator.log.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def _matches(reply: dict[str, Any], expected: tuple[str, str | None, str]) -> bool:
    reason, name, word = expected
    text = " ".join([reply["message"], *reply["rules"], *reply["paths"]])
    return reply["reason"] == reason and (name is None or reply["name"] == name) and word in text


def _one_provider(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, tmp_path: Path,
    entries: list[dict[str, Any]],
) -> OperatorProcess:  # fmt: skip
    config_file = write_config(tmp_path / "config.yaml", entries)
    providers = bad_provider_dir(tmp_path / "providers")
    operator = OperatorProcess(control_plane.kubeconfig, tmp_path, config=config_file, provider_path=providers)
    operators.append(operator.start())
    return operator


def test_metadata_changed_without_validation_is_refused_not_a_writer_crash_loop(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    cleanup: None, tmp_path: Path, figures: Figures,
) -> None:  # fmt: skip
    bystanders = seed_bystanders(hypernode_api)
    record = tmp_path / "garbage.jsonl"
    operator = _one_provider(
        operators,
        control_plane,
        tmp_path,
        [{"source": "garbage", "config": {"record": str(record), "poison": True, "replyWait": 3}}],
    )
    operator.wait(lambda: any(r["kind"] == "sent-sentinel" for r in read_record(record)), what="poison sent")
    landed = _wait_until(lambda: SENTINEL in cluster_hypernodes(hypernode_api, "garbage"), within=8)
    crashes = operator.metric(M + "writer_errors_total", provider="garbage")
    replies = [r for r in read_record(record) if r["kind"] == "reply"]
    figures.record(trials=1, faults_injected=2, replies_received=len(replies), writer_errors=int(crashes),
                   sentinel_written=landed, lost=0 if landed else 1, objects_checked=1,
                   bystanders_checked=bystanders.check())  # fmt: skip
    assert crashes == 0, "the writer crashed on the provider's object"
    assert landed, "the provider's next valid event never landed"
    assert set(cluster_hypernodes(hypernode_api, "garbage")) == {SENTINEL}


def _wait_until(condition: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_provider_pinning_the_default_executor_stops_nothing_else(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    cleanup: None, tmp_path: Path, figures: Figures,
) -> None:  # fmt: skip
    bystanders = seed_bystanders(hypernode_api)
    record = tmp_path / "hang-executor.jsonl"
    entries: list[dict[str, Any]] = [
        {"source": "emulated", "interval": "1s", "config": {"modelFile": "tiny-8"}},
        {"source": "hang-executor", "config": {"record": str(record)}},
    ]
    operator = _one_provider(operators, control_plane, tmp_path, entries)
    operator.wait(lambda: any(r["kind"] == "pinned" for r in read_record(record)), what="executor pinned")
    operator.wait(lambda: len(cluster_hypernodes(hypernode_api, "emulated")) == 3, what="the good provider")
    reloads = operator.metric(M + "config_reloads_total")
    entries[0]["interval"] = "2s"  # a configuration change must still be picked up
    write_config(tmp_path / "config.yaml", entries)
    reloaded = _wait_for_line(operator, "provider emulated: configuration changed, restarting", within=10)
    operator.wait(lambda: len(cluster_hypernodes(hypernode_api, "emulated")) == 3, what="the good provider again")
    reloads = operator.metric(M + "config_reloads_total") - reloads
    assert operator.process is not None
    operator.process.send_signal(signal.SIGTERM)
    stopped = _wait_for_line(operator, "volcano_topology.operator: stopped", within=20)
    # The process ends by itself: the abandoned threads get a bounded grace (volcano_topology/operator.py
    # exit_within), the SIGKILL after 30 s would show as exit code -9.
    try:
        code = operator.process.wait(30)
    except subprocess.TimeoutExpired:
        code = operator.stop(signal.SIGKILL)
    figures.record(trials=1, faults_injected=64, reloaded=reloaded, shutdown_finished=stopped, exit_code=code,
                   config_reloads=int(reloads),
                   lost=0, objects_checked=3, bystanders_checked=bystanders.check())  # fmt: skip
    assert reloaded, f"configuration change not applied while the default executor is pinned:\n{operator.tail()}"
    assert stopped and code == 0, f"SIGTERM did not stop the operator:\n{operator.tail()}"
