"""The harness gives tests a real API server: version, CRUD, CEL, RBAC, restricted identities."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.parity_cases import hn, selector
from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.controlplane.build import KUBERNETES_VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane


def test_reads_version_from_real_api_server(admin_api: client.ApiClient) -> None:
    version = client.VersionApi(admin_api).get_code()
    assert version.git_version == KUBERNETES_VERSION
    assert version.platform.startswith("linux/")


def test_creates_and_lists_a_hypernode(hypernode_api: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(hypernode_api)
    created = objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, hn("cp-leaf-1"))
    try:
        listed = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        names = [item["metadata"]["name"] for item in listed["items"]]
        assert "cp-leaf-1" in names
        # What the server returns round-trips through the model without loss.
        assert HyperNode.model_validate(created).to_dict() == created
        fetched = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, "cp-leaf-1")
        assert HyperNode.model_validate(fetched).to_dict() == fetched
        assert fetched["metadata"]["managedFields"], "server metadata is kept, not dropped"
    finally:
        objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "cp-leaf-1")


def test_cel_rule_rejects_two_selectors_with_422(hypernode_api: client.ApiClient) -> None:
    bad = selector(exactMatch={"name": "node-1"}, regexMatch={"pattern": "node-.*"})
    bad["metadata"]["name"] = "cp-two-selectors"
    with pytest.raises(client.ApiException) as raised:
        client.CustomObjectsApi(hypernode_api).create_cluster_custom_object(GROUP, VERSION, PLURAL, bad)
    assert raised.value.status == 422
    assert "Only one of ExactMatch, RegexMatch, or LabelMatch can be specified" in raised.value.body
    assert "spec.members[0].selector" in raised.value.body


def test_restricted_identity_is_forbidden_until_bound(
    control_plane: LocalControlPlane, hypernode_api: client.ApiClient
) -> None:
    token = control_plane.mint_token("vt-rbac", "reader")
    kubeconfig = control_plane.write_kubeconfig(control_plane.workdir / "reader.kubeconfig", token, "reader")
    reader = client.CustomObjectsApi(kube.api_client(kubeconfig))
    with pytest.raises(client.ApiException) as raised:
        reader.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert raised.value.status == 403

    rbac = client.RbacAuthorizationV1Api(hypernode_api)
    rbac.create_cluster_role(
        {
            "metadata": {"name": "vt-hypernode-reader"},
            "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "vt-hypernode-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "vt-hypernode-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "vt-rbac"}],
        }
    )
    # The authorizer learns of new bindings through its watch cache: allow it a moment.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert "items" in reader.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            break
        except client.ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with pytest.raises(client.ApiException) as raised:
        reader.create_cluster_custom_object(GROUP, VERSION, PLURAL, hn("cp-not-allowed"))
    assert raised.value.status == 403
