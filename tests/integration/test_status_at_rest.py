"""At rest the status pass reads HyperNodes from the operator's watch: no LIST, no write, poll after poll."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.conftest import cluster_hypernodes
from tests.integration.operator_harness import OperatorProcess, provider_dir, static_leaf, write_config
from volcano_topology.controlplane.cluster import LocalControlPlane

pytestmark = pytest.mark.integration


def hypernode_requests(api: client.ApiClient) -> dict[str, float]:
    """``apiserver_request_total`` for HyperNodes, by verb (the API server's own count of what it served)."""
    method, url, headers, body, _ = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    text = response.data.decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="hypernodes"' in line:
            verb = re.search(r'verb="([A-Z]+)"', line)
            subresource = re.search(r'subresource="([a-z]*)"', line)
            key = (verb.group(1) if verb else "?") + ("/" + subresource.group(1) if subresource and
                                                       subresource.group(1) else "")  # fmt: skip
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def synced(obj: dict[str, object]) -> bool:
    status = obj.get("status") or {}
    assert isinstance(status, dict)
    return any(c.get("type") == "Synced" and c.get("status") == "True" for c in status.get("conditions") or [])


def test_status_passes_at_rest_list_nothing_and_write_nothing(
    control_plane: LocalControlPlane, admin_api: client.ApiClient, hypernode_api: client.ApiClient, tmp_path: Path
) -> None:
    leaves = [static_leaf(f"rest-leaf-{i}", f"rest-n{i}") for i in range(5)]
    config = write_config(tmp_path / "c.yaml", [{"source": "static", "config": {"hypernodes": leaves}}],
                          status={"conditions": True})  # fmt: skip
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path, config=config, provider_path=provider_dir(tmp_path / "p")
    ).start()
    try:
        operator.wait(
            lambda: all(synced(cluster_hypernodes(hypernode_api).get(f"rest-leaf-{i}") or {}) for i in range(5)),
            what="five Synced leaves",
        )
        time.sleep(2)  # let the last status echoes arrive
        before = hypernode_requests(admin_api)
        time.sleep(5)  # ten status passes at --poll 0.5
        after = hypernode_requests(admin_api)
        grown = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after}
        assert grown.get("LIST", 0) == 0, grown
        assert {verb: n for verb, n in grown.items() if n and verb != "WATCH"} == {}, "no request at all"
    finally:
        operator.stop(signal.SIGTERM)
