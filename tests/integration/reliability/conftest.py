"""The reliability suite: faults survived, bad input rejected, nothing lost (docs/reliability.md).

Every scenario runs at two sizes. ``make test`` (so ``.ci/run``) runs the fast size: the same
code paths on a small model with few trials. ``make reliability`` runs the full size
(``VOLCANO_TOPOLOGY_RELIABILITY=full``: the 16,384-node model, 10+ trials, long storms), in
under 30 minutes; ``make soak`` runs the long soak on its own. Each scenario records its figures
(trials, faults injected, objects checked, anything lost) with the ``figures`` fixture, one JSON
line per scenario in ``$VOLCANO_TOPOLOGY_RELIABILITY_OUT`` (default
``test-artifacts/reliability/figures.jsonl``); docs/reliability.md is written from that file.

Bystanders (a manual HyperNode, Volcano's own discovery's, another operator's) are seeded
before a scenario and compared byte for byte after it: the operator never writes what it
does not own, whatever the faults.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import ROOT, install_volcano_admission_policy, wait_until_hypernodes_servable
from volcano_topology import kube, ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane

FULL = os.environ.get("VOLCANO_TOPOLOGY_RELIABILITY", "") == "full"
MODE = "full" if FULL else "fast"
OUT = Path(os.environ.get("VOLCANO_TOPOLOGY_RELIABILITY_OUT") or ROOT / "test-artifacts" / "reliability")


def scaled(fast: Any, full: Any) -> Any:
    """The fast size in ``make test``, the full one in ``make reliability``."""
    return full if FULL else fast


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "reliability" in item.path.parts:
            item.add_marker(pytest.mark.reliability)


@dataclass
class Figures:
    """One scenario's figures, written as one JSON line when the test ends (also when it failed)."""

    scenario: str
    values: dict[str, Any] = field(default_factory=dict)

    def record(self, **values: Any) -> None:
        self.values.update(values)

    def add(self, key: str, amount: float = 1) -> None:
        self.values[key] = self.values.get(key, 0) + amount


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    found = Figures(request.node.nodeid.split("reliability/", 1)[-1])
    started = time.monotonic()
    yield found
    report = getattr(request.node, "rep_call", None)
    line = {"scenario": found.scenario, "mode": MODE, "passed": bool(report and report.passed),
            "seconds": round(time.monotonic() - started, 1), **found.values}  # fmt: skip
    if report is not None and hasattr(report, "wasxfail"):
        line["expected_failure"] = True  # an xfail: the reproduction of a known gap, failing as expected
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "figures.jsonl", "a") as out:
        out.write(json.dumps(line, sort_keys=True) + "\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]  # read by the figures fixture
    return report


# -- a control plane of the scenario's own, to restart, pause and break ---------------------------


@pytest.fixture(scope="module")
def private_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """kube-apiserver + etcd for this module alone (faults here never reach other tests), CRD installed."""
    plane = LocalControlPlane(tmp_path_factory.mktemp("private-control-plane"), build=False)
    plane.start()
    try:
        api = kube.api_client(plane.kubeconfig)
        kube.apply_crd(api)
        install_volcano_admission_policy(api)
        wait_until_hypernodes_servable(api)
        yield plane
    finally:
        plane.stop()


# -- bystanders: objects the operator does not own, compared byte for byte ---------------------------

BYSTANDERS: list[dict[str, Any]] = [
    {"metadata": {"name": "bystander-manual", "annotations": {"note": "made by hand"}},
     "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": "manual-node-0"}}}]}},
    # Volcano's own UFM discovery: its source label, no managed-by label. A provider of ours named `ufm`
    # still does not own it.
    {"metadata": {"name": "bystander-volcano-ufm", "labels": {ownership.SOURCE_LABEL: "ufm"}},
     "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"regexMatch": {"pattern": "^volcano-ufm-"}}}]}},
    # Another volcano-topology's provider, one this operator does not run.
    {"metadata": {"name": "bystander-other-operator", "labels": ownership.ownership_labels("someone-else")},
     "spec": {"tier": 2, "members": [{"type": "HyperNode", "selector": {"exactMatch": {"name": "bystander-manual"}}}]}},
]  # fmt: skip


@dataclass
class Bystanders:
    api: client.ApiClient
    seeded: dict[str, dict[str, Any]] = field(default_factory=dict)

    def seed(self) -> Bystanders:
        objects = client.CustomObjectsApi(self.api)
        for body in BYSTANDERS:
            name = body["metadata"]["name"]
            try:
                objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            _wait_gone(objects, name)
            made = objects.create_cluster_custom_object(
                GROUP, VERSION, PLURAL, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HyperNode", **body}
            )
            if name == "bystander-manual":  # a status of its own too: ours must not touch it either
                made = objects.patch_cluster_custom_object_status(
                    GROUP, VERSION, PLURAL, name, {"status": {"nodeCount": 7}}
                )
            self.seeded[name] = made
        return self

    def check(self) -> int:
        """Every bystander exactly as seeded (resourceVersion, managedFields, status included); returns how many."""
        objects = client.CustomObjectsApi(self.api)
        for name, seeded in self.seeded.items():
            now = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
            assert now == seeded, f"bystander HyperNode {name} was changed:\nseeded {seeded}\nnow    {now}"
        return len(self.seeded)


def _wait_gone(objects: client.CustomObjectsApi, name: str) -> None:
    for _ in range(100):
        try:
            objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.1)
    raise AssertionError(f"bystander {name} not deleted")


def seed_bystanders(api: client.ApiClient) -> Bystanders:
    return Bystanders(api).seed()
