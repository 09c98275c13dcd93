"""The terminal tree (`volcano-topology tree`, `discover -o tree`, `dev`'s live view): content, folding, problems."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.builders import by_name, leaf, parent
from tests.terminal import run_on_terminal
from volcano_topology import devmode, discover, ownership
from volcano_topology.api import HyperNode, HyperNodeSpec, HyperNodeStatus, Member, MemberSelector, RegexMatch
from volcano_topology.cli import main
from volcano_topology.views import treeview
from volcano_topology.views.formats import as_json, slurm_tree
from volcano_topology.views.model import Topology
from volcano_topology.views.progress import Progress
from volcano_topology.views.source import ViewInputError, parse_objects
from volcano_topology.views.treeview import TreeOptions, render_tree

CLI = [sys.executable, "-m", "volcano_topology.cli"]


def fabric(spines: int = 2, leaves: int = 3, per_leaf: int = 4) -> dict[str, HyperNode]:
    objects, n = [], 0
    for s in range(spines):
        names = []
        for lf in range(leaves):
            name = f"leaf-{s}-{lf}"
            objects.append(leaf(name, *(f"n{(n := n + 1):03d}" for _ in range(per_leaf))))
            names.append(name)
        objects.append(parent(f"spine-{s}", *names))
    objects.append(parent("core", *(f"spine-{s}" for s in range(spines)), tier=3))
    return by_name(*objects)


def owned(hypernode: HyperNode, owner: str, synced: bool | None = None, reason: str = "Applied") -> HyperNode:
    status = None
    if synced is not None:
        condition = {"type": "Synced", "status": "True" if synced else "False", "reason": reason, "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
        status = HyperNodeStatus.model_validate({"conditions": [condition]})
    meta = hypernode.metadata.model_copy(update={"labels": ownership.ownership_labels(owner)})
    return hypernode.model_copy(update={"metadata": meta, "status": status})


def test_every_hypernode_appears_once_under_its_parent_with_tier_and_nodes() -> None:
    text = render_tree(Topology.of(fabric()))
    lines = text.splitlines()
    assert lines[0] == "core  (tier 3)"
    assert lines[1] == "├── spine-0  (tier 2)"
    assert lines[2] == "│   ├── leaf-0-0  (tier 1; 4 nodes: n001, n002, n003, … n004)"
    assert "    └── leaf-1-2  (tier 1; 4 nodes: n021, n022, n023, … n024)" in lines
    assert lines[-1] == "9 HyperNodes in 3 tiers: 1 at tier 3, 2 at tier 2, 6 at tier 1; 24 nodes; no owner"
    assert len(lines) == 10
    assert "\x1b[" not in text


def test_tier_names_owners_and_synced_state_are_shown() -> None:
    objects = fabric(spines=1, leaves=2)
    objects["core"] = objects["core"].model_copy(update={"spec": HyperNodeSpec(
        tier=3, tier_name="core", members=objects["core"].members)})  # fmt: skip
    objects = {n: owned(h, "ufm", synced=True) for n, h in objects.items()}
    objects["leaf-0-1"] = owned(objects["leaf-0-1"], "labels", synced=False, reason="SnapshotRejected")
    text = render_tree(Topology.of(objects))
    assert text.splitlines()[0] == "core  (tier 3 core)  [ufm]"
    assert "leaf-0-1  (tier 1; 4 nodes: n005, n006, n007, … n008)  [labels]  ✗ not synced: SnapshotRejected" in text
    assert text.splitlines()[-1].endswith("owners labels (1), ufm (3); Synced 3/4")
    # one owner: named once, in the summary
    single = render_tree(Topology.of({n: owned(h, "ufm", synced=True) for n, h in fabric(1, 1).items()}))
    assert "[ufm]" not in single
    assert single.splitlines()[-1].endswith("owner ufm; Synced 3/3")


def test_depth_folds_and_counts_what_it_hides() -> None:
    text = render_tree(Topology.of(fabric()), TreeOptions(depth=2))
    assert "leaf-0-0" not in text
    assert "│   └── … 3 below (3 HyperNodes, 12 nodes)" in text
    assert render_tree(Topology.of(fabric()), TreeOptions(depth=1)).splitlines()[1] == (
        "└── … 2 below (8 HyperNodes, 24 nodes)"
    )


def test_max_children_shows_the_first_and_counts_the_rest() -> None:
    text = render_tree(Topology.of(fabric(spines=1, leaves=5)), TreeOptions(max_children=2))
    assert "leaf-0-1" in text
    assert "leaf-0-2" not in text
    assert "    └── … 3 more (3 HyperNodes, 12 nodes)" in text


def test_folded_problems_are_still_counted() -> None:
    objects = fabric()
    objects["leaf-1-2"] = leaf("leaf-1-2", "n001")  # n001 is in leaf-0-0 too
    text = render_tree(Topology.of(objects), TreeOptions(depth=1))
    assert "problem(s) folded" in text


def test_problems_are_flagged_where_they_are() -> None:
    objects = fabric(spines=2, leaves=2)
    objects["leaf-1-1"] = leaf("leaf-1-1", "n001", "n099")  # n001 also in leaf-0-0
    objects["spine-1"] = parent("spine-1", "leaf-1-0", "leaf-1-1", "leaf-0-1")  # leaf-0-1: two parents
    objects["lost"] = leaf("lost", "n200")  # a leaf without a parent while the top tier is 3: legitimate
    objects["dangling"] = parent("dangling", "missing-leaf", tier=3)
    regex = Member(type="Node", selector=MemberSelector(regex_match=RegexMatch(pattern="^nothing-")))
    objects["by-regex"] = HyperNode.model_validate(
        {"metadata": {"name": "by-regex"}, "spec": {"tier": 1, "members": [regex.to_dict()]}}
    )
    nodes = {f"n{i:03d}": {} for i in range(1, 13)} | {"n099": {}, "n200": {}, "spare": {}}
    view = Topology.of(objects, nodes)
    text = render_tree(view)
    line = {ln.split("  (")[0].lstrip("│├└─ "): ln for ln in text.splitlines()}
    assert "node n001 is already a member of HyperNode leaf-0-0" in line["leaf-1-1"]
    assert "HyperNode leaf-0-1 already has parent spine-0" in text
    assert "leaf-0-1  (shown above)" in text
    assert "⚠" not in line["lost"]  # a root below the top tier is a tree of its own, not a problem
    assert "orphaned member: member HyperNode missing-leaf does not exist" in line["dangling"]
    assert "member 0 matches no Node" in line["by-regex"]
    assert "⚠ 1 Node(s) in no leaf: spare" in text
    # without the cluster's Nodes, the checks that need them are not made
    assert "in no leaf" not in render_tree(Topology.of(objects))


def test_a_node_listed_that_the_cluster_does_not_have_is_flagged() -> None:
    text = render_tree(Topology.of(by_name(leaf("a", "n1", "ghost")), {"n1": {}}))
    assert "member 1: Node ghost does not exist" in text


def test_regex_members_count_the_cluster_nodes_they_select() -> None:
    regex = Member(type="Node", selector=MemberSelector(regex_match=RegexMatch(pattern="^gpu")))
    hypernode = HyperNode.model_validate({"metadata": {"name": "r"}, "spec": {"tier": 1, "members": [regex.to_dict()]}})
    text = render_tree(Topology.of({"r": hypernode}, {"gpu1": {}, "gpu2": {}, "cpu1": {}}))
    assert text.splitlines()[0] == "r  (tier 1; 2 nodes: gpu1, gpu2)"


def test_a_cycle_is_shown_once_and_flagged() -> None:
    objects = by_name(parent("a", "b", tier=2), parent("b", "a", tier=3))
    text = render_tree(Topology.of(objects))
    assert text.count("a  (tier") == 1
    assert "a  (shown above)" in text
    assert "cycle" in text


def test_color_only_when_asked() -> None:
    view = Topology.of(fabric(1, 1))
    assert "\x1b[1mcore\x1b[0m" in render_tree(view, TreeOptions(color=True))
    assert "\x1b" not in render_tree(view)


def test_discover_and_dev_use_this_renderer() -> None:
    objects = fabric()
    assert discover.render_tree(objects) == render_tree(Topology.of(objects))
    assert devmode.render_tree is treeview.render_tree


def test_input_shapes_discover_output_and_lists() -> None:
    objects = [owned(h, "x").to_dict() for h in fabric(1, 2).values()]
    as_yaml = yaml.safe_dump_all(objects)
    as_list = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n001", "labels": {"a": "b"}}}
    for text in (as_yaml, as_list):
        hypernodes, nodes = parse_objects(text)
        assert sorted(hypernodes) == ["core", "leaf-0-0", "leaf-0-1", "spine-0"]
        assert nodes is None
    _, nodes = parse_objects(as_yaml + "---\n" + yaml.safe_dump(node))
    assert nodes == {"n001": {"a": "b"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Pod\nmetadata: {name: x}\n", "document 1: kind 'Pod' is not HyperNode"),
        ("[1, 2]\n", "document 1: expected an object"),
        ("kind: HyperNode\nmetadata: {name: x}\nspec: {tier: -1}\n", "document 1: not a valid HyperNode: spec.tier"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_input_is_named(text: str, message: str) -> None:
    with pytest.raises(ViewInputError, match=message.replace("[", r"\[")):
        parse_objects(text)


def test_cli_tree_reads_standard_input_plain_when_piped() -> None:
    objects = yaml.safe_dump_all([h.to_dict() for h in fabric().values()])
    done = subprocess.run([*CLI, "tree", "-", "--max-children", "1"], input=objects, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert "└── … 1 more (4 HyperNodes, 12 nodes)" in done.stdout
    forced = subprocess.run([*CLI, "tree", "-", "--color", "always"], input=objects, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert "\x1b[1mcore" in forced.stdout


def test_cli_tree_bad_file(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\n")
    assert main(["tree", str(bad)]) == 2
    assert "kind 'Pod' is not HyperNode" in capsys.readouterr().err
    assert main(["tree", str(tmp_path / "missing.yaml")]) == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_writes_only_to_a_terminal() -> None:
    piped = io.StringIO()
    progress = Progress(piped)
    progress.step("scanning 1/2", force=True)
    progress.done()
    assert piped.getvalue() == ""
    terminal = _Terminal()
    progress = Progress(terminal)
    progress.step("scanning 1/2", force=True)
    progress.done()
    assert "\rscanning 1/2" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r")


def test_the_documented_tree_example_is_what_tree_prints_today() -> None:
    """docs/tree-example.txt (shown in the README) is `discover emulated small-64 | tree -`, kept current."""
    from tests.unit.test_export_formats import emulated

    documented = (Path(__file__).resolve().parents[2] / "docs" / "tree-example.txt").read_text()
    assert render_tree(Topology.of(emulated("small-64"))) == documented


def test_the_documented_picture_is_the_emulated_fabric() -> None:
    import PIL.Image as image_module  # a test dependency: never skipped

    from tests.unit.test_export_formats import emulated
    from volcano_topology.views import picture

    path = Path(__file__).resolve().parents[2] / "docs" / "images" / "emulated-fabric.png"
    scene = picture.layout(Topology.of(emulated("small-64")), title="emulated fabric (small-64)")
    assert image_module.open(path).size == (scene.width, scene.height)


def test_owner_picks_one_providers_hypernodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = [owned(h, "mine") for h in fabric(1, 1).values()]
    theirs = [owned(leaf("other", "n9"), "theirs")]
    source = tmp_path / "all.yaml"
    source.write_text(yaml.safe_dump_all([h.to_dict() for h in [*mine, *theirs]]))
    assert main(["tree", str(source), "--owner", "mine"]) == 0
    out = capsys.readouterr().out
    assert "other" not in out
    assert out.splitlines()[-1].endswith("; owner mine")
    assert main(["export", "-f", "slurm-tree", str(source), "--owner", "theirs"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["SwitchName=other Nodes=n9"]


def _on_a_terminal(args: list[str], stdin: str) -> tuple[int, bytes]:
    """Run the CLI with standard output and error on a pseudo-terminal; what it printed there."""
    done, seen = run_on_terminal([*CLI, *args], stdin=stdin.encode(), stdout_on_terminal=True, timeout=60,
                                 env={**os.environ, "NO_COLOR": ""})  # fmt: skip
    return done.returncode, seen


def test_colour_on_a_terminal_by_default_and_no_png_there() -> None:
    objects = yaml.safe_dump_all([h.to_dict() for h in fabric(1, 1).values()])
    code, seen = _on_a_terminal(["tree", "-"], objects)
    assert code == 0
    assert b"\x1b[1mcore\x1b[0m" in seen
    code, seen = _on_a_terminal(["export", "-f", "png", "-"], objects)
    assert code == 2
    assert b"--format png writes binary" in seen


def test_a_mixed_depth_cluster_is_not_flagged() -> None:
    """Independent trees of different depth are valid for Volcano: a root below the top tier is no problem."""
    objects = fabric(spines=1, leaves=2)
    objects["solo"] = leaf("solo", "m1", "m2")  # a tier-1 tree of its own next to a 3-tier one
    objects["pod"] = parent("pod", "solo-leaf", tier=2)
    objects["solo-leaf"] = leaf("solo-leaf", "m3")
    view = Topology.of(objects)
    assert view.flags == []
    text = render_tree(view)
    assert "⚠" not in text and "problem" not in text
    assert "solo  (tier 1" in text
    assert json.loads(as_json(view))["problems"] == []
    assert "SwitchName=solo Nodes=m[1-2]" in slurm_tree(view)  # exported, not refused
