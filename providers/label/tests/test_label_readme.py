"""The README's example, as written: its entry and Nodes through `volcano-topology discover` give its tree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from volcano_topology_label import LabelSettings, analyse

from volcano_topology.api import HyperNode
from volcano_topology.discover import provider_config
from volcano_topology.tree import children_of

README = Path(__file__).resolve().parents[1] / "README.md"
CLI = [sys.executable, "-m", "volcano_topology.cli"]


def example(name: str) -> str:
    """The fenced block right after ``<!-- example: NAME -->``."""
    found = re.search(rf"<!-- example: {name} -->\n```\w*\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no example {name!r}"
    return found.group(1)


TREE_LINE = re.compile(
    r"^(?P<name>[a-z0-9.-]+)  \(tier (?P<tier>\d+) (?P<tier_name>[^;)]+)(?:; \d+ nodes?: (?P<nodes>[^)]*))?\)"
)


def tree_of(text: str) -> dict[str, tuple[str | None, int, str, str]]:
    """name -> (parent, tier, tierName, nodes shown) from a printed tree; other lines (a summary) are ignored."""
    found: dict[str, tuple[str | None, int, str, str]] = {}
    parents: list[str] = []
    for line in text.splitlines():
        stripped = re.sub(r"^[│├└─\s]+", "", line)  # the tree's drawing characters
        match = TREE_LINE.match(stripped)
        if not match:
            continue
        depth = (len(line) - len(stripped)) // 4
        del parents[depth:]
        found[match["name"]] = (parents[-1] if parents else None, int(match["tier"]), match["tier_name"],
                                match["nodes"] or "")  # fmt: skip
        parents.append(match["name"])
    return found


def built_tree(hypernodes: list[HyperNode]) -> dict[str, tuple[str | None, int, str, str]]:
    parent = {child: h.name for h in hypernodes for child in children_of(h)}
    return {
        h.name: (parent.get(h.name), h.spec.tier if h.spec else 0, (h.spec.tier_name if h.spec else None) or "",
                 ", ".join(m.selector.exact_match.name for m in h.members
                           if m.type == "Node" and m.selector and m.selector.exact_match))
        for h in hypernodes
    }  # fmt: skip


def test_the_readme_example_builds_the_readme_tree() -> None:
    settings = LabelSettings.model_validate(provider_config(example("entry"), "label"))
    nodes = yaml.safe_load(example("nodes"))
    built = analyse(nodes, settings)
    assert len(tree_of(example("tree"))) == 7
    assert built_tree(built.hypernodes) == tree_of(example("tree"))
    assert built.skipped == {"gpu-4"} and built.outside == {"cpu-0"}  # as the README says


def test_discover_runs_the_readme_example_offline(tmp_path: Path) -> None:
    entry, nodes = tmp_path / "entry.yaml", tmp_path / "nodes.yaml"
    entry.write_text(example("entry"))
    nodes.write_text(example("nodes"))
    done = subprocess.run([*CLI, "discover", "label", "--config", str(entry), "--nodes", str(nodes), "-o", "tree"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert tree_of(done.stdout) == tree_of(example("tree"))
    assert done.stdout.startswith(example("tree"))
    assert "label: 7 HyperNodes" in done.stderr
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
        {"metadata": {"name": f"n{i}", "labels": {"example.com/row": "r9", "example.com/pod": "p9"}}}
        for i in range(3)
    ]}  # fmt: skip
    nodes = tmp_path / "nodes.json"
    nodes.write_text(yaml.safe_dump(nodelist))
    entry = tmp_path / "entry.yaml"
    entry.write_text(example("entry"))
    done = subprocess.run([*CLI, "discover", "label", "--config", str(entry), "--nodes", str(nodes), "-o", "tree"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert tree_of(done.stdout) == {
        "a100-r9": (None, 2, "example.com/row", ""),
        "a100-p9": ("a100-r9", 1, "example.com/pod", "n0, n1, n2"),
    }
    bad = subprocess.run([*CLI, "discover", "label", "--config", "{networkTopologyTypes: {t: [{nodeLabel: a}]}}"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2
    assert "networkTopologyTypes" in bad.stderr and "at least one tier label" in bad.stderr


def table(heading: str) -> dict[str, str]:
    """``key -> second column`` of the first table under ``heading`` (backticks removed)."""
    text = README.read_text()
    section = text[text.index(heading) :]
    rows = re.findall(r"^\| `([\w.]+)` \| ([^|]*) \|", section[: section.index("\n\n", section.index("| ---"))], re.M)
    return {key: value.strip().strip("`") for key, value in rows}


def test_the_readme_tables_match_the_settings_and_the_gauges() -> None:
    from volcano_topology_label.provider import LabelProvider

    from volcano_topology.config import parse_duration

    documented = table("## Configuration")
    fields = {field.alias or name for name, field in LabelSettings.model_fields.items()}
    assert set(documented) == fields
    defaults = LabelSettings.model_validate({"networkTopologyTypes": {"t": [{"nodeLabel": "a"}, {"nodeLabel": "b"}]}})
    assert documented["missingLabels"] == defaults.missing_labels
    assert parse_duration(documented["debounce"]) == defaults.debounce
    assert parse_duration(documented["maxDelay"]) == defaults.max_delay
    assert "(default 5m)" in example("entry") and LabelProvider.interval == 300.0
    built = analyse({}, defaults)
    assert set(table("## Metrics")) == set(built.gauges())


def test_discover_accepts_the_roots_of_types_of_different_depth(tmp_path: Path) -> None:
    entry = tmp_path / "entry.yaml"
    entry.write_text(yaml.safe_dump({"networkTopologyDiscovery": [{"source": "label", "config": {
        "networkTopologyTypes": {
            "deep": [{"nodeLabel": "spine"}, {"nodeLabel": "leaf"}, {"nodeLabel": "kubernetes.io/hostname"}],
            "flat": [{"nodeLabel": "pod"}, {"nodeLabel": "kubernetes.io/hostname"}],
        }}}]}))  # fmt: skip
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"d0": {"spine": "s", "leaf": "l"}, "f0": {"pod": "p"}}))
    done = subprocess.run([*CLI, "discover", "label", "--config", str(entry), "--nodes", str(nodes), "-o", "tree"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert set(tree_of(done.stdout)) == {"deep-s", "deep-l", "flat-p"}
    assert "orphan" not in (done.stdout + done.stderr).lower()
