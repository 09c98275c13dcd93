"""The README's example, as written: its entry and Nodes through `volcano-topology discover` give its tree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from volcano_topology_label import LabelSettings, analyse

from volcano_topology.discover import provider_config, render_tree

README = Path(__file__).resolve().parents[1] / "README.md"
CLI = [sys.executable, "-m", "volcano_topology.cli"]


def example(name: str) -> str:
    """The fenced block right after ``<!-- example: NAME -->``."""
    found = re.search(rf"<!-- example: {name} -->\n```\w*\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no example {name!r}"
    return found.group(1)


def test_the_readme_example_builds_the_readme_tree() -> None:
    settings = LabelSettings.model_validate(provider_config(example("entry"), "label"))
    nodes = yaml.safe_load(example("nodes"))
    built = analyse(nodes, settings)
    assert render_tree({h.name: h for h in built.hypernodes}) == example("tree")
    assert built.skipped == {"gpu-4"} and built.outside == {"cpu-0"}  # as the README says


def test_discover_runs_the_readme_example_offline(tmp_path: Path) -> None:
    entry, nodes = tmp_path / "entry.yaml", tmp_path / "nodes.yaml"
    entry.write_text(example("entry"))
    nodes.write_text(example("nodes"))
    done = subprocess.run([*CLI, "discover", "label", "--config", str(entry), "--nodes", str(nodes), "-o", "tree"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == example("tree")
    assert "label: 6 HyperNodes" in done.stderr
    assert "1 node(s) lack a tier label of their type (missingLabels: skip), e.g. gpu-4" in done.stderr
    as_yaml = subprocess.run([*CLI, "discover", "label", "--config", str(entry), "--nodes", str(nodes), "-o", "yaml"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    documents = [d for d in yaml.safe_load_all(as_yaml.stdout) if d]
    assert {d["metadata"]["labels"]["volcano.sh/network-topology-source"] for d in documents} == {"label"}
    validated = subprocess.run([*CLI, "validate", "-"], input=as_yaml.stdout, capture_output=True, text=True,
                               timeout=60)  # fmt: skip
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_discover_reads_a_nodelist_and_refuses_a_bad_config(tmp_path: Path) -> None:
    nodelist = {"apiVersion": "v1", "kind": "NodeList", "items": [
        {"metadata": {"name": f"n{i}", "labels": {"example.com/pod": "p9", "kubernetes.io/hostname": f"n{i}"}}}
        for i in range(3)
    ]}  # fmt: skip
    nodes = tmp_path / "nodes.json"
    nodes.write_text(yaml.safe_dump(nodelist))
    entry = tmp_path / "entry.yaml"
    entry.write_text(example("entry"))
    done = subprocess.run([*CLI, "discover", "label", "--config", str(entry), "--nodes", str(nodes), "-o", "tree"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a100-p9  (tier 1 example.com/pod; 3 nodes: n0, n1, n2)\n"
    bad = subprocess.run([*CLI, "discover", "label", "--config", "{networkTopologyTypes: {t: [{nodeLabel: a}]}}"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2
    assert "networkTopologyTypes" in bad.stderr and "at least one tier label" in bad.stderr
