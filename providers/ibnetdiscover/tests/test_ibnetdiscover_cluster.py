"""Against real things: the real writer and API server, the operator process running the README's
ConfigMap as written, and `volcano-topology discover` offline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from volcano_topology_ibnetdiscover.build import build
from volcano_topology_ibnetdiscover.parse import parse
from volcano_topology_ibnetdiscover.provider import IBNetDiscoverProvider
from volcano_topology_ibnetdiscover.settings import IBNetDiscoverSettings

from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane, free_port
from volcano_topology.testing import assert_no_problems, assert_strict_tree, run_on_cluster

README = Path(__file__).resolve().parents[1] / "README.md"
CLI = [sys.executable, "-m", "volcano_topology.cli"]
SOURCE_LABEL = "volcano.sh/network-topology-source"


def readme_configmap() -> dict[str, Any]:
    text = README.read_text()
    block = re.search(r"<!-- example-configmap -->\n```yaml\n(.*?)```", text, re.S)
    assert block, "the README's example ConfigMap is marked with <!-- example-configmap -->"
    loaded: dict[str, Any] = yaml.safe_load(block.group(1))
    return loaded


def fake_ibnetdiscover(directory: Path, dump: Path) -> Path:
    """An `ibnetdiscover` for a machine without an HCA: prints a saved dump."""
    directory.mkdir(parents=True, exist_ok=True)
    command = directory / "ibnetdiscover"
    command.write_text(f'#!/bin/sh\nexec cat "{dump}"\n')
    command.chmod(0o755)
    return directory


def expected_names(director_path: Path, config: dict[str, Any]) -> list[str]:
    settings = IBNetDiscoverSettings.model_validate(config)
    tree = build(parse(director_path.read_bytes().decode()), settings.node_names, settings.options())
    return sorted(h.name for h in tree.build())


@pytest.mark.integration
def test_through_the_real_writer(vt_control_plane: LocalControlPlane, director_path: Path) -> None:
    provider = IBNetDiscoverProvider(IBNetDiscoverSettings(file=str(director_path)))
    result = run_on_cluster(
        vt_control_plane, provider, "ibnetdiscover-kit", until=lambda owned: len(owned) == 160, within=120
    )
    assert result.names == expected_names(director_path, {"file": str(director_path)})
    assert_no_problems(result)
    assert_strict_tree(result)
    assert result.members("sat11-0101-0927-20ib0") == ["sat111092710037", "sat111092710053"]
    tiers = {name: obj["spec"]["tier"] for name, obj in result.objects.items()}
    assert sorted(tiers.values()).count(3) == 1 and sorted(tiers.values()).count(2) == 8


@pytest.mark.integration
def test_the_readme_configmap_runs_in_the_operator(
    vt_control_plane: LocalControlPlane, director_path: Path, tmp_path: Path
) -> None:
    configmap = readme_configmap()
    namespace, name = configmap["metadata"]["namespace"], configmap["metadata"]["name"]
    (entry,) = yaml.safe_load(configmap["data"]["config.yaml"])["networkTopologyDiscovery"]
    assert entry["source"] == "ibnetdiscover" and entry["config"]["command"] == ["ibnetdiscover"]
    expected = expected_names(director_path, entry["config"])
    assert len(expected) == 162

    api: Any = kube.api_client(str(vt_control_plane.kubeconfig))
    core = client.CoreV1Api(api)
    objects = client.CustomObjectsApi(api)
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    try:  # as `kubectl apply -f` would: create, or replace what another test may have left
        core.create_namespaced_config_map(namespace, configmap)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map(name, namespace, configmap)
    bin_dir = fake_ibnetdiscover(tmp_path / "bin", director_path)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", POD_NAMESPACE=namespace)
    log = tmp_path / "operator.log"
    args = ["run", "--kubeconfig", str(vt_control_plane.kubeconfig), "--config-map", f"{namespace}/{name}",
            "--health-address", "127.0.0.1", "--health-port", str(free_port()), "--poll", "0.5",
            "--identity", "ibnetdiscover-test"]  # fmt: skip
    with log.open("wb") as out:
        operator = subprocess.Popen([*CLI, *args], stdout=out, stderr=subprocess.STDOUT, env=env)

    def owned() -> dict[str, Any]:
        listed = objects.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=f"{SOURCE_LABEL}=ibnetdiscover"
        )
        return {item["metadata"]["name"]: item for item in listed["items"]}

    try:
        deadline = time.monotonic() + 120
        found: dict[str, Any] = {}
        while time.monotonic() < deadline and sorted(found) != expected:
            assert operator.poll() is None, log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
            found = owned()
        assert sorted(found) == expected, log.read_text(errors="replace")[-4000:]
        leaf = found["sat11-0101-0902-01ib0"]  # no longer joined with 0902-02ib0: the UFM server is excluded
        assert leaf["spec"]["tierName"] == "leaf"
        assert [m["selector"]["exactMatch"]["name"] for m in leaf["spec"]["members"]] == [
            "sat111090201003", "sat111090201019",
        ]  # fmt: skip
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
        core.delete_namespaced_config_map(name, namespace)
        for item in owned():
            objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item)
        api.close()


def discover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "discover", "ibnetdiscover", *args], capture_output=True, text=True, timeout=120)


def test_discover_offline(director_path: Path, tmp_path: Path) -> None:
    found = discover("--config", f'{{"file": "{director_path}"}}', "-o", "yaml")
    assert found.returncode == 0, found.stderr
    documents = [d for d in yaml.safe_load_all(found.stdout) if d]
    assert sorted(d["metadata"]["name"] for d in documents) == expected_names(director_path, {"file": "x"})
    assert "ibnetdiscover: 160 HyperNodes" in found.stderr
    assert "103 HCA port(s) have no usable node description" in found.stderr
    validated = subprocess.run([*CLI, "validate", "-"], input=found.stdout, capture_output=True, text=True)
    assert validated.returncode == 0, validated.stdout

    cut = tmp_path / "cut.txt"
    cut.write_bytes(director_path.read_bytes()[:1_000_000])
    broken = discover("--config", f'{{"file": "{cut}"}}')
    assert broken.returncode == 1
    assert "ParseError: line 12371: malformed port line" in broken.stderr
    assert broken.stdout == ""
