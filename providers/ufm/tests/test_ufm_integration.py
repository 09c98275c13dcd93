"""The ufm provider into a real API server: through the real writer (test kit), and as the real operator process
reading its credentials from a real Secret."""

from __future__ import annotations

import base64
import contextlib
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from ufm_testlib import BASIC, PASSWORD, USER, Canned, FakeUFM, fat_tree, rail_optimised, to_ufm
from volcano_topology_ufm.client import PORTS
from volcano_topology_ufm.provider import UFMProvider
from volcano_topology_ufm.settings import UFMSettings

from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.controlplane.pki import Pki
from volcano_topology.testing import assert_no_problems, assert_strict_tree, run_on_cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: tests.integration
from tests.integration.operator_harness import OperatorProcess, write_config

pytestmark = pytest.mark.integration

FABRIC = fat_tree(pods=2, leaves=2, spines=2, cores=2, hosts=3)  # 4 leaves, 2 spine groups, 1 core group
NAMES = 7


def test_through_the_real_writer_and_a_broken_answer_deletes_nothing(
    vt_control_plane: LocalControlPlane, pki: Pki
) -> None:
    with FakeUFM(to_ufm(FABRIC), cert=(pki.serving_cert, pki.serving_key)) as ufm:
        settings = UFMSettings.model_validate(
            {"endpoint": ufm.endpoint, "caBundle": str(pki.ca_cert), "retries": 0, "namePrefix": "kit-"}
        )
        provider = UFMProvider(settings)
        state = {"broken": False}

        def until(owned: Mapping[str, HyperNode]) -> bool:
            if len(owned) == NAMES and not state["broken"]:
                ufm.set(PORTS, Canned(200, b"[]"))  # UFM now answers an empty fabric
                state["broken"] = True
            return state["broken"] and provider.stats.failures >= 2

        result = run_on_cluster(vt_control_plane, provider, "ufm-kit", credentials=BASIC, interval=0.2, until=until)
    assert len(result.names) == NAMES  # all still there after two refused scans
    assert [n for n in result.names if n.startswith("kit-leaf-")] == [
        "kit-leaf-p0-0", "kit-leaf-p0-1", "kit-leaf-p1-0", "kit-leaf-p1-1",
    ]  # fmt: skip
    assert result.members("kit-leaf-p1-0") == ["gpu-p1l0-00", "gpu-p1l0-01", "gpu-p1l0-02"]
    tiers = {obj["spec"]["tier"] for obj in result.objects.values()}
    assert tiers == {1, 2, 3}
    assert "ports: no host port cabled to a switch" in (provider.stats.last_error or "")
    assert all(
        o["metadata"]["labels"]["volcano.sh/network-topology-source"] == "ufm-kit" for o in result.objects.values()
    )
    assert_no_problems(result)
    assert_strict_tree(result)


@pytest.fixture
def api(vt_control_plane: LocalControlPlane) -> Iterator[Any]:
    api_client: Any = kube.api_client(vt_control_plane.kubeconfig)
    yield api_client
    objects = client.CustomObjectsApi(api_client)
    listed: Any = objects.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector="volcano.sh/network-topology-source=ufm"
    )
    for item in listed["items"]:
        with contextlib.suppress(client.ApiException):
            objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item["metadata"]["name"])
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(api_client).delete_namespaced_secret("ufm-credentials", "default")
    api_client.close()


def ufm_objects(api: Any) -> dict[str, dict[str, Any]]:
    listed: Any = client.CustomObjectsApi(api).list_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector="volcano.sh/network-topology-source=ufm"
    )
    return {item["metadata"]["name"]: item for item in listed["items"]}


def test_the_operator_runs_it_with_the_secret_of_its_configuration(
    vt_control_plane: LocalControlPlane, api: Any, pki: Pki, tmp_path: Path
) -> None:
    model = rail_optimised(sus=2, rails=8, hosts=4)
    model.hosts["BAD_HOST"] = ["SU0-RAIL0"]  # not a valid node name: unmapped, counted
    secret: Any = {
        "metadata": {"name": "ufm-credentials"},
        "data": {"username": base64.b64encode(USER.encode()).decode(),
                 "password": base64.b64encode(PASSWORD.encode()).decode()},
    }  # fmt: skip
    client.CoreV1Api(api).create_namespaced_secret("default", secret)
    with FakeUFM(to_ufm(model), cert=(pki.serving_cert, pki.serving_key)) as ufm:
        config = write_config(tmp_path / "config.yaml", [{
            "source": "ufm", "interval": "1s",
            "credentials": {"secretRef": {"name": "ufm-credentials", "namespace": "default"}},
            "config": {"endpoint": ufm.endpoint, "caBundle": str(pki.ca_cert)},
        }])  # fmt: skip
        operator = OperatorProcess(vt_control_plane.kubeconfig, tmp_path, config=config, identity="ufm-op").start()
        try:
            operator.wait(lambda: len(ufm_objects(api)) == 3, within=60, what="the rail-optimised tree")
            operator.wait(
                lambda: operator.metric("volcano_topology_provider_unmapped_hosts", provider="ufm") == 1,
                what="the unmapped host counted",
            )
            ufm.set(PORTS, Canned(200, b"<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"}))
            operator.wait(
                lambda: (
                    operator.metric("volcano_topology_scan_failures_total", provider="ufm") >= 2
                    and operator.metric("volcano_topology_provider_scan_failures", provider="ufm") >= 2
                ),
                what="refused scans counted",
            )
            assert len(ufm_objects(api)) == 3  # the HTML answer deleted nothing
        finally:
            code = operator.stop(signal.SIGTERM)
        log = operator.log.read_text()
    objects = ufm_objects(api)
    leaves = sorted(n for n, o in objects.items() if o["spec"]["tier"] == 1)
    assert len(leaves) == 2 and all(n.startswith(("su0-rail0-x8-", "su1-rail0-x8-")) for n in leaves)
    su0 = next(n for n in leaves if n.startswith("su0"))
    assert sorted(m["selector"]["exactMatch"]["name"] for m in objects[su0]["spec"]["members"]) == [
        f"dgx-su0-{h:02d}" for h in range(4)
    ]
    assert code == 0
    assert "BAD_HOST" in log and "not mapped to a node name" in log
    assert "UFM answered an HTML page" in log
    assert PASSWORD not in log
    assert {s.authorization for s in ufm.seen} == {"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
