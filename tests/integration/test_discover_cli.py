"""`volcano-topology discover` and `providers`: offline output that validates and that the API server accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from volcano_topology_emulated.provider import MODELS, shipped_models

from volcano_topology.api import GROUP, PLURAL, VERSION

CLI = [sys.executable, "-m", "volcano_topology.cli"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("model", shipped_models())
def test_discover_pipes_into_validate_for_every_shipped_model(model: str) -> None:
    discovered = run("discover", "emulated", "--config", str(MODELS / f"{model}.yaml"), "-o", "yaml")
    assert discovered.returncode == 0, discovered.stderr
    validated = run("validate", "-", stdin=discovered.stdout)
    assert validated.returncode == 0, validated.stdout
    count = len([d for d in yaml.safe_load_all(discovered.stdout) if d])
    assert f"{count} HyperNode document(s) valid" in validated.stderr


def test_the_api_server_accepts_what_discover_prints(hypernode_api: client.ApiClient) -> None:
    discovered = run("discover", "emulated", "--config", str(MODELS / "large-16384.yaml"), "-o", "yaml")
    documents = [d for d in yaml.safe_load_all(discovered.stdout) if d]
    assert len(documents) == 545
    objects = client.CustomObjectsApi(hypernode_api)
    for document in documents:  # what `kubectl apply --server-side --dry-run=server -f -` sends
        objects.patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, document["metadata"]["name"], document, dry_run="All", field_manager="kubectl",
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip


def test_discover_tree_and_json(tmp_path: Path) -> None:
    tree = run("discover", "emulated", "--config", str(MODELS / "tiny-8.yaml"), "-o", "tree")
    assert tree.returncode == 0
    assert tree.stdout.splitlines()[0] == "spine-0  (tier 2 spine)"
    assert "└── leaf-1  (tier 1 leaf; 4 nodes: node5, node6, node7, … node8)" in tree.stdout
    as_json = run("discover", "emulated", "--config", str(MODELS / "tiny-8.yaml"), "-o", "json")
    assert yaml.safe_load(as_json.stdout)["kind"] == "List"


def test_discover_reads_volcano_configuration_shape(tmp_path: Path) -> None:
    config = tmp_path / "volcano.yaml"
    config.write_text(yaml.safe_dump({"networkTopologyDiscovery": [
        {"source": "other", "enabled": True, "config": {}},
        {"source": "emulated", "enabled": True, "interval": "10s", "config": {"modelFile": "tiny-8"}},
    ]}))  # fmt: skip
    result = run("discover", "emulated", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "emulated: 3 HyperNodes" in result.stderr


def test_discover_errors_are_clear(tmp_path: Path) -> None:
    unknown = run("discover", "no-such-provider")
    assert unknown.returncode == 2
    assert "provider 'no-such-provider': is not installed" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"switches": [{"name": "leaf", "parents": ["ghost"]}]}))
    invalid = run("discover", "emulated", "--config", str(bad))
    assert invalid.returncode == 2
    assert "provider 'emulated': invalid config:" in invalid.stderr
    assert "switch leaf: parent ghost is not declared" in invalid.stderr


def test_discover_reports_garbage_as_problems() -> None:
    garbage = run("discover", "emulated", "--config", "/dev/stdin", stdin=yaml.safe_dump({
        "modelFile": "tiny-8", "faults": {"garbage": {"every": 1, "kind": "two-leaves"}},
    }))  # fmt: skip
    assert garbage.returncode == 1
    assert "[topology: node in one leaf]" in garbage.stderr
    assert garbage.stdout == ""


def test_providers_lists_installed_providers() -> None:
    listed = run("providers")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("emulated"))
    assert "volcano-topology-provider-emulated" in row
    assert "0.1.0" in row
    assert row.endswith("compatible")


def test_discover_takes_the_config_block_inline_or_as_a_file(tmp_path: Path) -> None:
    inline = run("discover", "emulated", "--config", "{modelFile: tiny-8}", "-o", "tree")
    assert inline.returncode == 0, inline.stderr
    assert "emulated: 3 HyperNodes" in inline.stderr
    block = tmp_path / "block.yaml"
    block.write_text("modelFile: tiny-8\n")
    from_file = run("discover", "emulated", "--config", str(block), "-o", "tree")
    assert from_file.stdout == inline.stdout
    missing = run("discover", "emulated", "--config", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 2 and "No such file" in missing.stderr
