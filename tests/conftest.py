"""Shared fixtures. Integration tests get a real kube-apiserver + etcd on loopback.

The control plane is never built here, where a test timeout could cut the build short:
``make test`` runs ``volcano-topology control-plane build`` first (cached under
``~/.cache/volcano-topology``), unless ``KUBEBUILDER_ASSETS`` names prebuilt binaries.
When any test fails, the control plane's logs are copied to ``test-artifacts/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
# Objects carrying this label are left out of Volcano's admission policy, so one test
# cluster can show both what the API server alone decides and what Volcano adds.
SKIP_ADMISSION_LABEL = "volcano-topology.test/skip-volcano-admission"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane(vt_control_plane: LocalControlPlane) -> LocalControlPlane:
    """The test kit's control plane (``volcano_topology.testing``): the suite and the kit share one.

    It keeps the control plane's logs in ``test-artifacts/`` when a test failed."""
    return vt_control_plane


@pytest.fixture(scope="session")
def admin_api(control_plane: LocalControlPlane) -> client.ApiClient:
    return kube.api_client(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def hypernode_api(control_plane: LocalControlPlane, admin_api: client.ApiClient) -> client.ApiClient:
    """The HyperNode CRD installed and Established, with Volcano's admission policy in force."""
    kube.apply_crd(admin_api)
    install_volcano_admission_policy(admin_api)
    wait_until_hypernodes_servable(admin_api)
    return admin_api


def install_volcano_admission_policy(api: client.ApiClient) -> None:
    policy, binding = [
        d for d in yaml.safe_load_all((DATA / "volcano-hypernode-validating-policy.yaml").read_text()) if d
    ]
    binding["spec"]["matchResources"]["objectSelector"] = {
        "matchExpressions": [{"key": SKIP_ADMISSION_LABEL, "operator": "DoesNotExist"}]
    }
    admission = client.AdmissionregistrationV1Api(api)
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)


def wait_until_hypernodes_servable(api: client.ApiClient, timeout: float = 30.0) -> None:
    """A fresh CRD can answer 429 while its storage initialises, and a new policy takes a moment to load."""
    objects = client.CustomObjectsApi(api)
    probe: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperNode",
        "metadata": {"name": "readiness-probe"},
        "spec": {"tier": 1},  # no members: only Volcano's policy rejects this
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, probe, dry_run="All")
        except client.ApiException as exc:
            if exc.status == 422 and "at least one member" in str(exc.body):
                return
        time.sleep(0.25)
    raise TimeoutError("HyperNodes were not servable with Volcano's admission policy in force")
