"""`export --format kueue` and `node-labels` against a real API server: Kueue's own Topology CRD (vendored in
tests/data) accepts the Topology on a server-side dry-run, and the Node label patches apply (dry-run) and read
back to the same tree."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.builders import by_name, leaf, parent
from tests.unit.test_export_formats import emulated
from volcano_topology.views import formats
from volcano_topology.views.model import Topology

pytestmark = pytest.mark.integration

KUEUE_CRD = Path(__file__).resolve().parent.parent / "data" / "kueue-topology-crd.yaml"
GROUP, VERSION, PLURAL = "kueue.x-k8s.io", "v1alpha1", "topologies"


@pytest.fixture(scope="module")
def kueue_api(admin_api: client.ApiClient) -> client.ApiClient:
    crd = yaml.safe_load(KUEUE_CRD.read_text())
    extensions = client.ApiextensionsV1Api(admin_api)
    extensions.patch_custom_resource_definition(crd["metadata"]["name"], crd, field_manager="volcano-topology-tests",
                                                force=True, _content_type="application/apply-patch+yaml")  # fmt: skip
    deadline = time.monotonic() + 30
    probe = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Topology", "metadata": {"name": "probe"},
             "spec": {"levels": [{"nodeLabel": "kubernetes.io/hostname"}]}}  # fmt: skip
    while True:  # Established, and its storage serving
        try:
            dry_run_apply(admin_api, probe)
            return admin_api
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def dry_run_apply(api: client.ApiClient, topology: dict[str, Any]) -> Any:
    answer = client.CustomObjectsApi(api).patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, topology["metadata"]["name"], topology, dry_run="All",
        field_manager="volcano-topology", _content_type="application/apply-patch+yaml", _preload_content=False,
    )  # fmt: skip
    return json.loads(answer.data)


def shapes() -> list[Topology]:
    two_depths = by_name(leaf("rack-1", "n1", "n2"), leaf("rack-2", "n3"), parent("row", "rack-1"),
                         parent("top", "row", "rack-2", tier=3))  # fmt: skip
    return [Topology.of(emulated("small-64")), Topology.of(emulated("rails-256")), Topology.of(two_depths)]


@pytest.mark.parametrize("index", range(3))
def test_kueue_accepts_the_exported_topology(kueue_api: client.ApiClient, index: int) -> None:
    view = shapes()[index]
    documents = list(yaml.safe_load_all(formats.kueue(view, name=f"fabric-{index}")))
    topology = documents[0]
    accepted = dry_run_apply(kueue_api, topology)
    assert accepted["spec"]["levels"] == topology["spec"]["levels"]
    assert accepted["spec"]["levels"][-1] == {"nodeLabel": "kubernetes.io/hostname"}
    with pytest.raises(client.ApiException):  # the dry-run wrote nothing
        client.CustomObjectsApi(kueue_api).get_cluster_custom_object(GROUP, VERSION, PLURAL, f"fabric-{index}")
    # every level's label is on the nodes, as the Node patches that follow the Topology set them
    patches = documents[1:]
    levels = [level["nodeLabel"] for level in topology["spec"]["levels"][:-1]]
    assert {p["metadata"]["name"] for p in patches} == set(view.node_homes())
    for patch in patches:  # every level: Kueue's TAS ignores a Node missing one
        assert set(patch["metadata"]["labels"]) == set(levels)


def test_the_crd_really_checks_what_kueue_requires(kueue_api: client.ApiClient) -> None:
    """A control: the same dry-run refuses a Topology whose hostname level is not the lowest."""
    bad = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Topology", "metadata": {"name": "bad"},
           "spec": {"levels": [{"nodeLabel": "kubernetes.io/hostname"}, {"nodeLabel": "x.io/rack"}]}}  # fmt: skip
    with pytest.raises(client.ApiException) as refused:
        dry_run_apply(kueue_api, bad)
    assert refused.value.status == 422
    assert "lowest level of topology" in str(refused.value.body)


def test_node_label_patches_apply_and_read_back_to_the_same_tree(admin_api: client.ApiClient) -> None:
    view = Topology.of(emulated("small-64"))
    core = client.CoreV1Api(admin_api)
    applied: dict[str, dict[str, str]] = {}
    for patch in yaml.safe_load_all(formats.labels_as_patch(formats.node_labels(view))):
        name = patch["metadata"]["name"]
        answer = core.patch_node(name, patch, field_manager="volcano-topology-labels", dry_run="All",
                                 _content_type="application/apply-patch+yaml")  # fmt: skip
        applied[name] = dict(answer.metadata.labels or {})
    parents, homes = formats.tree_from_labels(applied, formats.DEFAULT_LABEL_PREFIX)
    assert homes == {node: found[0] for node, found in view.node_homes().items()}
    assert parents == {n: view.parents[n][0] for n in view.hypernodes if view.parents[n]}
