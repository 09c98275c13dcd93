"""A provider with ``needs_nodes`` follows Nodes through the operator's watch; others never make it watch them."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.conftest import cluster_hypernodes, members
from tests.integration.operator_harness import OperatorProcess, provider_dir, static_leaf, write_config
from volcano_topology.controlplane.cluster import LocalControlPlane

pytestmark = pytest.mark.integration

NODES = [f"view-n{i}" for i in range(4)]


@pytest.fixture
def core(hypernode_api: client.ApiClient) -> Iterator[client.CoreV1Api]:
    api = client.CoreV1Api(hypernode_api)
    yield api
    for name in NODES:
        with contextlib.suppress(client.ApiException):
            api.delete_node(name)


@pytest.fixture
def operator_for(control_plane: LocalControlPlane, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        operator.stop(signal.SIGTERM)


def leaf_members(api: client.ApiClient) -> list[str] | None:
    found = cluster_hypernodes(api).get("nodes-leaf")
    return None if found is None else sorted(members(found))


def test_a_provider_that_needs_nodes_sees_adds_relabels_and_deletes(
    control_plane: LocalControlPlane, hypernode_api: client.ApiClient, core: client.CoreV1Api,
    operator_for: list[OperatorProcess], tmp_path: Path,
) -> None:  # fmt: skip
    for name in NODES[:2]:
        core.create_node({"metadata": {"name": name, "labels": {"vt-test/leaf": "yes"}}})
    core.create_node({"metadata": {"name": NODES[2]}})
    config = write_config(tmp_path / "c.yaml", [{"source": "nodes"}])
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path, config=config, provider_path=provider_dir(tmp_path / "p")
    ).start()
    operator_for.append(operator)
    operator.wait(lambda: leaf_members(hypernode_api) == NODES[:2], what="the leaf of the two labelled Nodes")
    assert "watching Nodes (names and labels) for provider nodes" in operator.log.read_text()
    core.patch_node(NODES[2], {"metadata": {"labels": {"vt-test/leaf": "yes"}}})
    operator.wait(lambda: leaf_members(hypernode_api) == NODES[:3], within=20, what="a relabelled Node joins")
    core.delete_node(NODES[0])
    operator.wait(lambda: leaf_members(hypernode_api) == NODES[1:3], within=20, what="a deleted Node leaves")
    before = operator.metric("volcano_topology_provider_snapshots_sent", provider="nodes")
    for _ in range(3):  # status-only updates: nothing the view holds changes
        core.patch_node_status(NODES[1], {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}})  # fmt: skip
    core.create_node({"metadata": {"name": NODES[3], "labels": {"vt-test/leaf": "yes"}}})
    operator.wait(lambda: leaf_members(hypernode_api) == NODES[1:], within=20, what="a new labelled Node joins")
    assert operator.metric("volcano_topology_provider_snapshots_sent", provider="nodes") == before + 1
    assert operator.metric("volcano_topology_node_lists_total") == 1, "one LIST; the watch did the rest"
    assert operator.metric("volcano_topology_nodes_watched") >= 3


def test_an_operator_whose_configuration_needs_no_node_never_lists_nodes(
    control_plane: LocalControlPlane, hypernode_api: client.ApiClient, operator_for: list[OperatorProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    config = write_config(tmp_path / "c.yaml", [{"source": "static", "config": {"hypernodes": [
        static_leaf("view-static-leaf", "x1")]}}])  # fmt: skip
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path, config=config, provider_path=provider_dir(tmp_path / "p")
    ).start()
    operator_for.append(operator)
    operator.wait(lambda: "view-static-leaf" in cluster_hypernodes(hypernode_api), what="the static leaf")
    _, text = operator.get("/metrics")
    assert "volcano_topology_node_lists" not in text
    assert "watching Nodes" not in operator.log.read_text()
