"""charts/volcano-topology against a real API server: server-side dry run of the rendered chart, then
`helm install` exactly as deploy/README.md says; its ServiceAccount's token passes the same authorization
matrix as the kustomize install, and after a `helm upgrade` that configures a provider with a Secret, the
operator runs as that account, reads the ConfigMap the chart wrote and converges.

A control plane of its own, like tests/integration/test_deploy_kustomize.py: the same names are installed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator_harness import static_leaf
from tests.integration.test_deploy_kustomize import (
    ACCOUNT,
    NS,
    Check,
    account_kubeconfig,
    account_token,
    allowed,
    assert_matrix,
    deploy_providers,
    forbidden_lines,
    hypernodes,
    kubectl,
    must_allow,
    must_deny,
    start_operators,
    stop_all,
    synced,
    wait_until,
)
from tests.unit.test_deploy_manifests import CHART, ROOT
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.controlplane.tools import ensure_helm

# deploy/README.md shows exactly this command.
INSTALL = ["install", "volcano-topology", "charts/volcano-topology", "--namespace", "volcano-topology",
           "--create-namespace"]  # fmt: skip


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(tmp_path_factory.mktemp("deploy-helm"), build=False) as control_plane:
        yield control_plane


def helm(plane: LocalControlPlane, *args: str) -> str:
    command = [str(ensure_helm(build=False)), "--kubeconfig", str(plane.kubeconfig), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(plane: LocalControlPlane) -> str:
    rendered = helm(plane, "template", "volcano-topology", str(CHART), "--namespace", NS, "--include-crds")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    # The server-side dry run of namespaced objects needs their Namespace (helm's --create-namespace
    # accepts one that exists).
    kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(namespace))
    kubectl(plane, "create", "namespace", NS)
    kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=rendered)
    helm(plane, *INSTALL)
    kubectl(plane, "wait", "--for=condition=Established", "crd/hypernodes.topology.volcano.sh", "--timeout=60s")
    deadline = time.monotonic() + 30
    while plane.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return account_token(plane, NS, ACCOUNT)


def test_helm_install_gives_exactly_least_privilege(plane: LocalControlPlane, installed: str) -> None:
    assert_matrix(plane, installed, must_allow(NS, "volcano-topology", "volcano-topology"),
                  [*must_deny(NS, "volcano-topology", "volcano-topology"),
                   *(Check(v, "nodes") for v in ("get", "list", "watch"))])  # fmt: skip
    status, deployment = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/volcano-topology")
    assert status == 200 and deployment["spec"]["replicas"] == 2


def test_helm_upgrade_with_a_provider_converges_as_the_release_account(
    plane: LocalControlPlane, installed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane.request("POST", f"/api/v1/namespaces/{NS}/secrets", {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "fabric-credentials"}, "data": {"token": "aGVsbQ=="}})  # fmt: skip
    values: dict[str, Any] = {
        "config": {
            "networkTopologyDiscovery": [
                {
                    "source": "deploy-static",
                    "credentials": {"secretRef": {"name": "fabric-credentials"}},
                    "config": {"hypernodes": [static_leaf("helm-leaf-0", "n0")], "credentialLabel": "token"},
                }
            ]
        }
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(plane, "upgrade", "volcano-topology", "charts/volcano-topology", "--namespace", NS, "-f", str(values_file))
    token = account_token(plane, NS, ACCOUNT)
    assert allowed(plane, token, Check("get", "secrets", namespace=NS, name="fabric-credentials"))
    assert not allowed(plane, token, Check("get", "secrets", namespace=NS, name="ufm-credentials"))
    kubeconfig = account_kubeconfig(plane, token, tmp_path / "sa.kubeconfig")
    operators = start_operators(kubeconfig, tmp_path, deploy_providers(tmp_path / "providers"),
                                f"{NS}/volcano-topology", 1, monkeypatch)  # fmt: skip
    try:
        wait_until(lambda: synced(hypernodes(plane).get("helm-leaf-0") or {}), 60, "a Synced HyperNode", operators)
        assert hypernodes(plane)["helm-leaf-0"]["metadata"]["labels"]["credential"] == "helm"
        assert not forbidden_lines(operators[0]), operators[0].tail()
    finally:
        codes = stop_all(operators)
    assert codes == [0], operators[0].tail()
