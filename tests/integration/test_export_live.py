"""`tree` and `export` reading the live cluster (the default input): owners, Synced state, the cluster's Nodes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from kubernetes import client

from tests.builders import leaf, parent
from tests.faultproxy import FaultProxy
from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.plan import with_ownership

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "volcano_topology.cli"]


def create(api: client.ApiClient, hypernode: HyperNode, synced: bool | None = None) -> None:
    objects = client.CustomObjectsApi(api)
    objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, hypernode.to_dict())
    if synced is not None:
        condition = {"type": "Synced", "status": str(synced), "reason": "Applied" if synced else "WriteFailed",
                     "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
        objects.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, hypernode.name,
                                                   {"status": {"conditions": [condition]}})  # fmt: skip


def cli(control_plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*CLI, *args, "--kubeconfig", str(control_plane.kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_tree_and_export_read_the_cluster(
    control_plane: LocalControlPlane, hypernode_api: client.ApiClient, faults: FaultProxy
) -> None:
    create(hypernode_api, with_ownership(leaf("live-l1", "live-n1", "live-n2"), "fabric-a"), synced=True)
    create(hypernode_api, with_ownership(leaf("live-l2", "live-ghost"), "fabric-a"), synced=False)
    labels = {ownership.SOURCE_LABEL: "ufm"}  # Volcano's own discovery owns this one, not volcano-topology
    spine = parent("live-spine", "live-l1", "live-l2")
    create(hypernode_api, spine.model_copy(update={"metadata": spine.metadata.model_copy(update={"labels": labels})}))
    core = client.CoreV1Api(hypernode_api)
    for name in ("live-n1", "live-n2"):
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        core.patch_node(
            name, node, field_manager="volcano-topology-tests", _content_type="application/apply-patch+yaml"
        )
    try:
        tree = cli(control_plane, "tree")
        assert tree.returncode == 0, tree.stderr
        lines = tree.stdout.splitlines()
        assert "live-spine  (tier 2)  [ufm]" in lines
        assert "├── live-l1  (tier 1; 2 nodes: live-n1, live-n2)  [fabric-a]" in lines
        l2 = next(line for line in lines if "live-l2" in line)
        assert "✗ not synced: WriteFailed" in l2
        assert "member 0: Node live-ghost does not exist" in l2  # the cluster's Nodes were read
        assert "\x1b" not in tree.stdout

        exported = cli(control_plane, "export", "-f", "slurm-tree")
        assert exported.returncode == 0, exported.stderr
        assert "SwitchName=live-spine Switches=live-l[1-2]" in exported.stdout
        assert "SwitchName=live-l1 Nodes=live-n[1-2]" in exported.stdout
        labels_out = cli(control_plane, "export", "-f", "node-labels", "--labels-as", "patch")
        patches = {p["metadata"]["name"]: p["metadata"]["labels"] for p in yaml.safe_load_all(labels_out.stdout)}
        assert set(patches) == {"live-n1", "live-n2"}  # no patch for live-ghost: applying it would create it
        assert patches["live-n1"] == {
            "volcano-topology.io/tier-1": "live-l1",
            "volcano-topology.io/tier-2": "live-spine",
        }
    finally:
        for name in ("live-n1", "live-n2"):
            core.delete_node(name)
        for name in ("live-spine", "live-l1", "live-l2"):  # all three: later tests share the cluster
            client.CustomObjectsApi(hypernode_api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def test_tree_says_when_the_cluster_cannot_be_read(tmp_path: object) -> None:
    done = subprocess.run([*CLI, "tree", "--kubeconfig", "/nonexistent"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot read the cluster" in done.stderr
