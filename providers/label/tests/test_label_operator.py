"""The real operator, as its own process, runs the label provider against a real API server and real Node objects.

1,000 Nodes are created, the operator writes their tree from one snapshot; then all 1,000 are
relabelled at once, and the operator gets exactly one new snapshot and writes the new tree.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane, free_port

pytestmark = pytest.mark.integration

MARK = "label-provider-test"  # a label on every Node this test creates, to delete them all in one call
SPINE, LEAF = "test.example.com/spine", "test.example.com/leaf"
COUNT = 1000


def layout(leaf_size: int, leaf: str, spine_size: int, spine: str) -> dict[str, dict[str, str]]:
    return {
        f"lbl-{i:04}": {SPINE: f"{spine}{i // spine_size}", LEAF: f"{leaf}{i // leaf_size}", MARK: "yes"}
        for i in range(COUNT)
    }


def expected(nodes: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """HyperNode name -> members, for the layouts above (every value unique at its tier: readable names)."""
    tree: dict[str, set[str]] = {}
    for name, labels in nodes.items():
        tree.setdefault(f"gpu-{labels[LEAF]}", set()).add(name)
        tree.setdefault(f"gpu-{labels[SPINE]}", set()).add(f"gpu-{labels[LEAF]}")
    return {name: sorted(members) for name, members in tree.items()}


@pytest.fixture
def api(vt_control_plane: LocalControlPlane) -> Iterator[client.ApiClient]:
    api_client = kube.api_client(vt_control_plane.kubeconfig, pool_size=8)
    clean(api_client)
    yield api_client
    clean(api_client)
    api_client.close()  # type: ignore[no-untyped-call]


def clean(api: client.ApiClient) -> None:
    client.CoreV1Api(api).delete_collection_node(label_selector=MARK)
    objects = client.CustomObjectsApi(api)
    listed = cast(dict[str, Any], objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=SOURCE))
    for item in listed["items"]:
        objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item["metadata"]["name"])


SOURCE = "volcano.sh/network-topology-source=label"


def written(api: client.ApiClient) -> dict[str, list[str]]:
    objects = client.CustomObjectsApi(api)
    items = cast(dict[str, Any], objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=SOURCE))
    return {
        item["metadata"]["name"]: sorted(m["selector"]["exactMatch"]["name"] for m in item["spec"]["members"])
        for item in items["items"]
    }


class Operator:
    """``volcano-topology run`` as its own process, started the way tests/integration/operator_harness.py does."""

    def __init__(self, kubeconfig: Path, workdir: Path, config: Path) -> None:
        self.port = free_port()
        self.log = workdir / "operator.log"
        args = [sys.executable, "-m", "volcano_topology.cli", "-v", "run", "--kubeconfig", str(kubeconfig),
                "--health-port", str(self.port), "--poll", "0.5", "--identity", "label-test", "--drain", "10",
                "--config", str(config)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def metric(self, name: str, **labels: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return -1.0
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def snapshots(self) -> float:
        return self.metric("volcano_topology_events_total", provider="label", type="SNAPSHOT")

    def wait(self, condition: Callable[[], bool], within: float, what: str) -> None:
        started = time.monotonic()
        while time.monotonic() - started < within:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited ({self.process.returncode}):\n{self.tail()}")
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"{what} not reached within {within:.0f}s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)  # the writer's drain (10 s) and some margin; this test is not about shutdown
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def in_parallel(work: Callable[[Any], Any], items: list[Any]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, items))


def test_relabelling_a_thousand_nodes_gives_one_snapshot_and_the_new_tree(
    vt_control_plane: LocalControlPlane, api: client.ApiClient, tmp_path: Path
) -> None:
    core = client.CoreV1Api(api)
    before = layout(100, "l", 500, "s")  # 10 leaves of 100 under 2 spines
    node = client.V1Node
    meta = client.V1ObjectMeta
    in_parallel(lambda item: core.create_node(node(metadata=meta(name=item[0], labels=item[1]))), list(before.items()))

    config = tmp_path / "config.yaml"
    types = {"gpu": [{"nodeLabel": SPINE}, {"nodeLabel": LEAF}, {"nodeLabel": "kubernetes.io/hostname"}]}
    config.write_text(yaml.safe_dump({
        "networkTopologyDiscovery": [{"source": "label", "config": {
            "networkTopologyTypes": types, "debounce": "3s", "maxDelay": "60s",
        }}],
        "operator": {"leaderElection": {"enabled": False}, "deletionGuard": {"maxDeleteFraction": 1.0}},
    }))  # fmt: skip
    operator = Operator(vt_control_plane.kubeconfig, tmp_path, config)
    try:
        operator.wait(lambda: written(api) == expected(before), 60, "the first tree")
        assert operator.snapshots() == 1, "the first snapshot came from the synced view, whole"
        assert operator.metric("volcano_topology_provider_nodes_placed", provider="label") == COUNT

        after = layout(50, "m", 250, "t")  # 20 leaves of 50 under 4 spines: every Node relabelled
        in_parallel(lambda item: core.patch_node(item[0], {"metadata": {"labels": item[1]}}), list(after.items()))
        operator.wait(lambda: written(api) == expected(after), 90, "the tree after relabelling")
        assert operator.snapshots() == 2, "1,000 label changes coalesced into one snapshot"
        assert operator.metric("volcano_topology_provider_nodes_missing_level", provider="label") == 0
    finally:
        operator.stop()
