"""The operator as a separate process against the real API server."""

from __future__ import annotations

import base64
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.faultproxy import FaultProxy
from tests.integration.conftest import cluster_hypernodes, members
from tests.integration.operator_harness import OperatorProcess, provider_dir, static_leaf, write_config
from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane


@pytest.fixture
def operators(control_plane: LocalControlPlane, faults: FaultProxy, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        operator.stop(signal.SIGKILL if operator.process and operator.process.poll() is None else signal.SIGTERM)


@pytest.fixture
def providers(tmp_path: Path) -> Path:
    return provider_dir(tmp_path / "providers")


def launch(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, tmp_path: Path, **kwargs: Any
) -> OperatorProcess:
    operator = OperatorProcess(control_plane.kubeconfig, tmp_path, **kwargs).start()
    operators.append(operator)
    return operator


def synced(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Synced" and c["status"] == "True" for c in conditions)


def test_converges_from_empty_with_status(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml", [{"source": "emulated", "interval": "1s", "config": {"modelFile": "tiny-8"}}]
    )
    operator = launch(operators, control_plane, tmp_path, config=config)
    seconds = operator.wait(lambda: len(cluster_hypernodes(hypernode_api, "emulated")) == 3, what="3 HyperNodes")
    operator.wait(lambda: all(synced(o) for o in cluster_hypernodes(hypernode_api, "emulated").values()),
                  what="Synced conditions")  # fmt: skip
    assert operator.wait(lambda: operator.ready().get("ready") is True, what="ready") >= 0
    objects = cluster_hypernodes(hypernode_api, "emulated")
    assert "nodeCount" not in (objects["leaf-0"].get("status") or {}), "nodeCount is Volcano's unless enabled"
    assert operator.metric("volcano_topology_writes_total", provider="emulated", verb="create") == 3
    assert operator.metric("volcano_topology_status_writes_total") == 3, "one status write per object, no more"
    made = operator.metric("volcano_topology_last_applied_event_timestamp_seconds", provider="emulated")
    assert 0 < made <= time.time(), "when the provider made the snapshot that was applied"
    assert operator.metric("volcano_topology_last_applied_event_latency_seconds", provider="emulated") >= 0
    print(f"converged from empty in {seconds:.1f}s")


def test_converges_from_a_prepopulated_cluster(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient, tmp_path: Path
) -> None:
    objects = client.CustomObjectsApi(hypernode_api)
    labels = ownership.ownership_labels("emulated")
    stale = [static_leaf("leaf-0", "old-node", labels=labels), static_leaf("leaf-9", "node9", labels=labels)]
    for body in [*stale, static_leaf("handmade", "node42")]:
        objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, {"apiVersion": f"{GROUP}/{VERSION}",
                                                                      "kind": "HyperNode", **body})  # fmt: skip
    config = write_config(
        tmp_path / "c.yaml", [{"source": "emulated", "interval": "1s", "config": {"modelFile": "tiny-8"}}]
    )
    operator = launch(operators, control_plane, tmp_path, config=config)
    operator.wait(lambda: set(cluster_hypernodes(hypernode_api, "emulated")) == {"leaf-0", "leaf-1", "spine-0"},
                  what="stale objects replaced")  # fmt: skip
    everything = cluster_hypernodes(hypernode_api)
    assert members(everything["leaf-0"]) == ["node1", "node2", "node3", "node4"]
    assert members(everything["handmade"]) == ["node42"], "an object that is not ours is left alone"
    assert "labels" not in everything["handmade"]["metadata"]


def test_hot_reload_restarts_only_the_changed_provider_and_reads_secrets(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    providers: Path, tmp_path: Path,
) -> None:  # fmt: skip
    core = client.CoreV1Api(hypernode_api)
    core.create_namespaced_secret("default", {"metadata": {"name": "vendor-creds"}, "data": {"token": b64("v1")}})
    starts_a, starts_b = tmp_path / "a.starts", tmp_path / "b.starts"

    def entries(*leaves_a: str, token_secret: str = "vendor-creds") -> list[dict[str, Any]]:
        hypernodes_a = [static_leaf(leaf, f"{leaf}-node") for leaf in leaves_a]
        return [
            {"source": "static", "config": {"hypernodes": hypernodes_a, "startsFile": str(starts_a)}},
            {"source": "static2", "credentials": {"secretRef": {"name": token_secret, "namespace": "default"}},
             "config": {"hypernodes": [static_leaf("b-leaf", "n2")], "startsFile": str(starts_b),
                        "credentialLabel": "token"}},
        ]  # fmt: skip

    config = write_config(tmp_path / "c.yaml", entries("a-leaf"))
    operator = launch(operators, control_plane, tmp_path, config=config, provider_path=providers)
    operator.wait(lambda: {"a-leaf", "b-leaf"} <= set(cluster_hypernodes(hypernode_api)), what="both providers")
    assert cluster_hypernodes(hypernode_api)["b-leaf"]["metadata"]["labels"]["credential"] == "v1"

    write_config(config, entries("a-leaf", "a-leaf-2"))  # only provider "static" changes
    operator.wait(lambda: "a-leaf-2" in cluster_hypernodes(hypernode_api, "static"), what="reload of static")
    assert starts_a.read_text().count("start") == 2
    assert starts_b.read_text().count("start") == 1, "the unchanged provider kept running"

    core.patch_namespaced_secret("vendor-creds", "default", {"data": {"token": b64("v2")}})  # rotation
    operator.wait(lambda: cluster_hypernodes(hypernode_api)["b-leaf"]["metadata"]["labels"].get("credential") == "v2",
                  what="rotated credential")  # fmt: skip
    assert starts_b.read_text().count("start") == 2
    assert starts_a.read_text().count("start") == 2, "the other provider was not restarted by the rotation"
    core.delete_namespaced_secret("vendor-creds", "default")


def test_a_crashing_provider_is_restarted_while_another_keeps_writing(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    providers: Path, tmp_path: Path,
) -> None:  # fmt: skip
    config = write_config(tmp_path / "c.yaml", [
        {"source": "static", "config": {"crash": True}},
        {"source": "static2", "config": {"hypernodes": [static_leaf("steady-leaf", "n1")]}},
    ])  # fmt: skip
    operator = launch(operators, control_plane, tmp_path, config=config, provider_path=providers)
    operator.wait(lambda: operator.metric("volcano_topology_provider_restarts_total", provider="static") >= 2,
                  what="restarts of the crashing provider")  # fmt: skip
    assert "steady-leaf" in cluster_hypernodes(hypernode_api, "static2")
    assert operator.process is not None
    assert operator.process.poll() is None, "the operator itself keeps running"
    assert "static provider configured to crash" in operator.tail(200)


def test_invalid_configuration_is_an_event_and_the_last_good_one_keeps_running(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    providers: Path, tmp_path: Path,
) -> None:  # fmt: skip
    core = client.CoreV1Api(hypernode_api)
    entry = {"source": "static", "config": {"hypernodes": [static_leaf("cm-leaf", "n1")]}}
    good = {"networkTopologyDiscovery": [entry], "operator": {"leaderElection": {"enabled": False}}}
    data = {"volcano-controller.conf": yaml.safe_dump(good)}
    core.create_namespaced_config_map("default", {"metadata": {"name": "vt-config"}, "data": data})
    try:
        operator = launch(operators, control_plane, tmp_path, config_map="default/vt-config", provider_path=providers)
        operator.wait(lambda: "cm-leaf" in cluster_hypernodes(hypernode_api, "static"), what="first configuration")
        bad = {"networkTopologyDiscovery": [{"source": "static", "config": {"hypernodes": [], "colour": "red"}}]}
        core.patch_namespaced_config_map(
            "vt-config", "default", {"data": {"volcano-controller.conf": yaml.safe_dump(bad)}}
        )

        def event_posted() -> bool:
            events = core.list_namespaced_event("default", field_selector="involvedObject.name=vt-config").items
            return any(e.reason == "InvalidConfiguration" and "colour" in e.message for e in events)

        operator.wait(event_posted, what="an InvalidConfiguration Event")
        assert operator.metric("volcano_topology_config_errors_total") >= 1
        assert "colour" in str(operator.ready().get("errors"))
        time.sleep(2)
        assert "cm-leaf" in cluster_hypernodes(hypernode_api, "static"), "the last good configuration still runs"
    finally:
        core.delete_namespaced_config_map("vt-config", "default")


def test_sigterm_mid_sync_drains_and_exits_zero(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", [{"source": "emulated", "config": {"modelFile": "large-16384"}}],
                          concurrency=2)  # fmt: skip
    operator = launch(operators, control_plane, tmp_path, config=config)
    operator.wait(lambda: operator.metric("volcano_topology_writes_total", provider="emulated") >= 20, what="writes")
    started = time.monotonic()
    code = operator.stop(signal.SIGTERM)
    took = time.monotonic() - started
    assert code == 0
    assert took < 25, f"stopped in {took:.1f}s"
    written = cluster_hypernodes(hypernode_api, "emulated")
    assert written, "what was written stays"
    print(f"SIGTERM mid-sync: exited 0 in {took:.1f}s with {len(written)} of 545 HyperNodes written")


def test_dry_run_writes_nothing(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", [{"source": "emulated", "config": {"modelFile": "tiny-8"}}])
    operator = launch(operators, control_plane, tmp_path, config=config, extra=["--dry-run"])
    operator.wait(lambda: "dry run: would create HyperNode spine-0" in operator.tail(200), what="the plan logged")
    time.sleep(1.5)
    assert cluster_hypernodes(hypernode_api) == {}


def test_node_changes_update_node_count(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    providers: Path, tmp_path: Path,
) -> None:  # fmt: skip
    core = client.CoreV1Api(hypernode_api)
    names = ["count-n1", "count-n2", "count-n3"]
    for name in names:
        core.create_node({"metadata": {"name": name, "labels": {"rack": "r1" if name != "count-n3" else "r2"}}})
    by_label = {"metadata": {"name": "rack-r1"}, "spec": {"tier": 1, "members": [
        {"type": "Node", "selector": {"labelMatch": {"matchLabels": {"rack": "r1"}}}}]}}  # fmt: skip
    config = write_config(tmp_path / "c.yaml", [{"source": "static", "config": {"hypernodes": [by_label]}}],
                          status={"nodeCount": True})  # fmt: skip
    try:
        operator = launch(operators, control_plane, tmp_path, config=config, provider_path=providers)

        def count() -> int | None:
            found = cluster_hypernodes(hypernode_api).get("rack-r1")
            return ((found or {}).get("status") or {}).get("nodeCount")

        operator.wait(lambda: count() == 2, what="nodeCount 2")

        # Only changes a selector reads cause work: an unused label and a status-only update recount nothing.
        def counted() -> float:
            return operator.metric("volcano_topology_node_counts_total")

        def marked() -> float:
            return operator.metric("volcano_topology_node_change_marks_total")

        counts, marks = counted(), marked()
        core.patch_node("count-n1", {"metadata": {"labels": {"unused": "yes"}}})
        core.patch_node_status("count-n2", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        time.sleep(3)  # several controller steps and status passes at the harness's poll interval
        assert counted() == counts, "a label no selector reads recounted"
        assert marked() == marks, "a label no selector reads marked an object"
        core.patch_node("count-n3", {"metadata": {"labels": {"rack": "r1"}}})
        operator.wait(lambda: count() == 3, within=20, what="nodeCount 3 after a label change")
        assert marked() == marks + 1, "the rack label concerns rack-r1 alone"
        assert counted() == counts + 1
        core.delete_node("count-n1")
        operator.wait(lambda: count() == 2, within=20, what="nodeCount 2 after a node deletion")
        node = core.read_node("count-n2")
        assert not (node.metadata.annotations or {}), "kopf wrote nothing to Nodes"
        assert not node.metadata.finalizers
    finally:
        for name in names:
            with contextlib.suppress(client.ApiException):
                core.delete_node(name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_an_owned_hypernode_that_fails_to_apply_gets_a_condition_and_an_event(
    operators: list[OperatorProcess], control_plane: LocalControlPlane, hypernode_api: client.ApiClient,
    providers: Path, tmp_path: Path,
) -> None:  # fmt: skip
    good = [static_leaf("ev-leaf", "n1"), static_leaf("ev-other", "n2")]
    config = write_config(tmp_path / "c.yaml", [{"source": "static", "config": {"hypernodes": good}}])
    operator = launch(operators, control_plane, tmp_path, config=config, provider_path=providers)
    operator.wait(lambda: all(synced(o) for o in cluster_hypernodes(hypernode_api, "static").values())
                  and len(cluster_hypernodes(hypernode_api, "static")) == 2, what="both Synced")  # fmt: skip
    obj = cluster_hypernodes(hypernode_api)["ev-leaf"]
    assert not any(k.startswith("kopf.") for k in obj["metadata"].get("annotations") or {}), "kopf wrote nothing"
    assert not obj["metadata"].get("finalizers")

    bad = {**static_leaf("ev-leaf", "n1"), "spec": {"tier": 1, "members": [
        {"type": "Node", "selector": {"regexMatch": {"pattern": "(?=lookahead)"}}}]}}  # fmt: skip
    write_config(config, [{"source": "static", "config": {"hypernodes": [bad, static_leaf("ev-other", "n2")]}}])

    def condition() -> dict[str, Any]:
        found = cluster_hypernodes(hypernode_api)["ev-leaf"].get("status") or {}
        return next((c for c in found.get("conditions") or [] if c["type"] == "Synced"), {})

    operator.wait(lambda: condition().get("status") == "False", what="Synced=False")
    assert condition()["reason"] == "Invalid"
    assert "RE2" in condition()["message"]
    core = client.CoreV1Api(hypernode_api)
    operator.wait(lambda: any(e.reason == "Invalid" for e in core.list_namespaced_event(
        "default", field_selector="involvedObject.name=ev-leaf").items), what="a Warning Event")  # fmt: skip
    assert members(cluster_hypernodes(hypernode_api)["ev-leaf"]) == ["n1"], "the last good version stays"
