"""The operator as a process: drift repair by name, and living beside Volcano's own controller.

- A vendor-style provider re-reads a CSV file; every edit (move, delete, rename, 20 in a row)
  ends with the cluster equal to the file, without a single false drift warning, and a
  watcher sees no state with a node in two leaves or a HyperNode under two parents.
- A source Volcano runs itself is never run here; an object another writer keeps changing
  is contested (condition, Event, metric) instead of fought over.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import cluster_hypernodes, members
from tests.integration.operator_harness import OperatorProcess, static_leaf, write_config
from tests.integration.test_operator import launch, operators, providers  # noqa: F401 - fixtures
from tests.integration.watcher import StateWatcher
from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane

Racks = dict[str, list[str]]


def write_csv(path: Path, racks: Racks) -> None:
    """Atomically, as an editor saving the file would (the provider never reads half a file)."""
    partial = path.with_suffix(".tmp")
    partial.write_text("".join(f"{rack},{node}\n" for rack, nodes in racks.items() for node in nodes))
    os.replace(partial, path)


def equals(api: client.ApiClient, racks: Racks) -> bool:
    have = cluster_hypernodes(api, "csv")
    want = {**{rack: sorted(nodes) for rack, nodes in racks.items() if nodes}, "spine-0": sorted(racks)}
    return {name: sorted(members(obj)) for name, obj in have.items()} == want


def edits(seed: int, racks: Racks, count: int) -> Iterator[Racks]:
    """Random moves, renames, new racks and removed racks; never a rack left empty."""
    rng = random.Random(seed)
    serial = 0
    for _ in range(count):
        racks = {rack: list(nodes) for rack, nodes in racks.items()}
        kind = rng.choice(["move", "move", "move", "rename", "add", "remove"])
        names = sorted(racks)
        if kind == "rename":
            old = rng.choice(names)
            serial += 1
            racks[f"{old.split('-v')[0]}-v{serial}"] = racks.pop(old)
        elif kind == "add":
            serial += 1
            source = max(names, key=lambda r: len(racks[r]))
            racks[f"rack-new{serial}"] = [racks[source].pop()]
        elif kind == "remove" and len(names) > 3:
            gone = rng.choice(names)
            rng.choice([r for r in names if r != gone])
            racks[rng.choice([r for r in names if r != gone])].extend(racks.pop(gone))
        else:
            source = rng.choice([r for r in names if len(racks[r]) > 1] or names)
            target = rng.choice([r for r in names if r != source])
            racks[target].append(racks[source].pop(rng.randrange(len(racks[source]))))
        yield racks


def test_a_provider_rereading_a_file_ends_equal_to_it_after_every_edit(
    operators: list[OperatorProcess],  # noqa: F811
    control_plane: LocalControlPlane,
    hypernode_api: client.ApiClient,
    providers: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    csv = tmp_path / "racks.csv"
    racks: Racks = {f"rack-{r}": [f"csv-{r}{n}" for n in range(4)] for r in "abcde"}
    write_csv(csv, racks)
    config = write_config(tmp_path / "c.yaml", [{"source": "csv", "config": {"file": str(csv)}}])
    operator = launch(operators, control_plane, tmp_path, config=config, provider_path=providers)
    operator.wait(lambda: equals(hypernode_api, racks), what="the first topology")
    watcher = StateWatcher(hypernode_api, "csv").start()
    try:
        # The three edits, then 10 random ones, each awaited...
        moved = {**racks, "rack-a": racks["rack-a"][1:], "rack-b": [*racks["rack-b"], racks["rack-a"][0]]}
        deleted = {k: v for k, v in moved.items() if k != "rack-c"} | {"rack-d": moved["rack-d"] + moved["rack-c"]}
        renamed = {("rack-b2" if k == "rack-b" else k): v for k, v in deleted.items()}
        steps = [moved, deleted, renamed, *edits(7, renamed, 10)]
        for step, want in enumerate(steps):
            write_csv(csv, want)
            operator.wait(lambda want=want: equals(hypernode_api, want), within=20, what=f"edit {step}")  # type: ignore[misc]
        # ...then 20 edits in a row, faster than the provider scans.
        for want in edits(11, steps[-1], 20):
            write_csv(csv, want)
            time.sleep(0.05)
        operator.wait(lambda: equals(hypernode_api, want), within=30, what="the last of 20 quick edits")
        time.sleep(2)  # any late, stale repair would show now
        assert equals(hypernode_api, want), "and it stays so"
        watcher_settled = time.monotonic() + 10
        while time.monotonic() < watcher_settled and set(watcher.current) != set(
            cluster_hypernodes(hypernode_api, "csv")
        ):
            time.sleep(0.1)
    finally:
        watcher.stop()
    log = operator.log.read_text()
    assert "someone else" not in log, "no false drift warning"
    assert operator.metric("volcano_topology_repairs_total") == 0
    assert watcher.violations == [], f"{watcher.bad_states()} bad states of {watcher.states}"
    print(f"\ncsv edits: watcher saw {watcher.states} states, {watcher.bad_states()} with a violation")


def test_a_source_that_volcano_runs_is_not_run_here(
    operators: list[OperatorProcess],  # noqa: F811
    control_plane: LocalControlPlane,
    hypernode_api: client.ApiClient,
    providers: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(hypernode_api)
    for namespace in ("volcano-system",):
        try:
            core.create_namespace({"metadata": {"name": namespace}})
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    # The real label provider, with a Node it would make a HyperNode of if it ran.
    core.create_node({"metadata": {"name": "vc-label-n1", "labels": {"vc-test/rack": "r1"}}})
    types = {"vcrack": [{"nodeLabel": "vc-test/rack"}, {"nodeLabel": "kubernetes.io/hostname"}]}
    entries = [
        {"source": "label", "config": {"networkTopologyTypes": types}},
        {"source": "static", "config": {"hypernodes": [static_leaf("vc-static-leaf", "n2")]}},
    ]
    volcano_conf = {"volcano-controller.conf": write_config(tmp_path / "v.yaml", entries).read_text()}
    name = "volcano-controller-configmap"
    core.create_namespaced_config_map("volcano-system", {"metadata": {"name": name}, "data": volcano_conf})
    try:
        # Pointed at Volcano's own ConfigMap: "label" is Volcano's; "static" is not a Volcano source.
        operator = launch(
            operators, control_plane, tmp_path, config_map=f"volcano-system/{name}", provider_path=providers
        )
        operator.wait(lambda: "vc-static-leaf" in cluster_hypernodes(hypernode_api), what="the static provider")
        operator.wait(lambda: "label" in operator.ready().get("errors", {}), what="a /readyz error about label")
        assert "Volcano's controller runs its built-in 'label'" in operator.ready()["errors"]["label"]
        time.sleep(1.5)
        assert not cluster_hypernodes(hypernode_api, "label"), "never written"
        events = core.list_namespaced_event("volcano-system").items
        assert any(e.involved_object.name == name and "built-in 'label'" in e.message for e in events)
        assert "provider 'label' is not run" in operator.log.read_text()
        operator.stop()
        # With its own configuration, the operator still reads Volcano's ConfigMap and stays away from "label".
        own = write_config(tmp_path / "own.yaml", entries)
        second = launch(operators, control_plane, tmp_path, config=own, provider_path=providers, identity="own")
        second.wait(lambda: "label" in second.ready().get("errors", {}), what="a /readyz error about label")
        assert not cluster_hypernodes(hypernode_api, "label")
    finally:
        core.delete_namespaced_config_map(name, "volcano-system")
        core.delete_node("vc-label-n1")


class ForeignWriter(threading.Thread):
    """Another controller writing the same object: puts its own member in whenever it differs."""

    def __init__(self, api: client.ApiClient, name: str, times: int) -> None:
        super().__init__(daemon=True)
        self.objects = client.CustomObjectsApi(api)
        self.name, self.times, self.writes = name, times, 0
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while self.writes < self.times and time.monotonic() < deadline:
            try:
                obj = self.objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, self.name)
            except client.ApiException:
                time.sleep(0.1)
                continue
            if members(obj) != ["foreign-node"]:
                body: dict[str, Any] = {
                    "spec": {"members": [{"type": "Node", "selector": {"exactMatch": {"name": "foreign-node"}}}]}
                }
                self.objects.patch_cluster_custom_object(
                    GROUP, VERSION, PLURAL, self.name, body, field_manager="other-controller",
                    _content_type="application/merge-patch+json",
                )  # fmt: skip
                self.writes += 1
            time.sleep(0.2)
        self.done.set()


def test_an_object_another_controller_keeps_changing_is_contested(
    operators: list[OperatorProcess],  # noqa: F811
    control_plane: LocalControlPlane,
    hypernode_api: client.ApiClient,
    providers: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    entries = [
        {"source": "static", "config": {"hypernodes": [static_leaf("ct-leaf", "n1"), static_leaf("ct-ok", "n2")]}}
    ]
    config = write_config(tmp_path / "c.yaml", entries)
    operator = launch(operators, control_plane, tmp_path, config=config, provider_path=providers)
    operator.wait(lambda: "ct-leaf" in cluster_hypernodes(hypernode_api), what="the leaf")
    fight = ForeignWriter(hypernode_api, "ct-leaf", times=8)
    fight.start()

    def contested() -> bool:
        status = cluster_hypernodes(hypernode_api)["ct-leaf"].get("status") or {}
        return any(c["type"] == "Synced" and c.get("reason") == "Contested" for c in status.get("conditions") or [])

    operator.wait(contested, within=40, what="a Contested condition")
    fight.done.wait(70)
    writes_before = operator.metric("volcano_topology_writes_total", provider="static")
    time.sleep(2)
    assert operator.metric("volcano_topology_writes_total", provider="static") == writes_before, "it stopped fighting"
    assert operator.metric("volcano_topology_repairs_total", provider="static") <= 3
    assert operator.metric("volcano_topology_contested_hypernodes", provider="static") == 1
    events = client.CoreV1Api(hypernode_api).list_namespaced_event("default").items
    assert any(e.involved_object.name == "ct-leaf" and e.reason == "Contested" for e in events)
    assert members(cluster_hypernodes(hypernode_api)["ct-leaf"]) == ["foreign-node"], "left to the other writer"
    assert ownership.owner_of(cluster_hypernodes(hypernode_api)["ct-ok"]["metadata"]["labels"]) == "static"


def status_managers(obj: dict[str, Any]) -> set[str]:
    return {f["manager"] for f in obj["metadata"].get("managedFields") or [] if f.get("subresource") == "status"}


def test_two_operators_never_write_each_others_status(
    operators: list[OperatorProcess],  # noqa: F811
    control_plane: LocalControlPlane,
    hypernode_api: client.ApiClient,
    providers: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """One operator runs "static" with conditions, the other "static2" with nodeCount: neither touches the other's."""
    mine = [{"source": "static", "config": {"hypernodes": [static_leaf("two-a", "n1")]}}]
    theirs = [{"source": "static2", "config": {"hypernodes": [static_leaf("two-b", "n2")]}}]
    a = launch(
        operators, control_plane, tmp_path, identity="a", provider_path=providers,
        config=write_config(tmp_path / "a.yaml", mine),
    )  # fmt: skip
    b = launch(
        operators, control_plane, tmp_path, identity="b", provider_path=providers,
        config=write_config(tmp_path / "b.yaml", theirs, status={"nodeCount": True}),
    )  # fmt: skip

    def described() -> bool:
        objects = cluster_hypernodes(hypernode_api)
        return all("two-" + x in objects and (objects["two-" + x].get("status") or {}).get("conditions") for x in "ab")

    a.wait(described, what="both objects with conditions")
    b.wait(lambda: "nodeCount" in (cluster_hypernodes(hypernode_api)["two-b"].get("status") or {}), what="nodeCount")
    versions = {n: o["metadata"]["resourceVersion"] for n, o in cluster_hypernodes(hypernode_api).items()}
    time.sleep(3)
    objects = cluster_hypernodes(hypernode_api)
    assert {n: objects[n]["metadata"]["resourceVersion"] for n in ("two-a", "two-b")} == {
        n: versions[n] for n in ("two-a", "two-b")
    }, "no status flapping between the two"
    assert status_managers(objects["two-a"]) == {"volcano-topology/static/status"}
    assert status_managers(objects["two-b"]) == {"volcano-topology/static2/status"}
    assert "nodeCount" not in objects["two-a"]["status"], "b wrote nothing to a's object"


@pytest.fixture(autouse=True)
def _no_volcano_config_map(hypernode_api: client.ApiClient) -> None:
    """Each test starts without a Volcano ConfigMap unless it makes one."""
    try:
        client.CoreV1Api(hypernode_api).delete_namespaced_config_map("volcano-controller-configmap", "volcano-system")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
