"""Exports checked against each format's rules: Slurm (every node once, every switch reachable, hostlists
that expand to the right names), node labels (strictly nested, round-trip to the same tree), Kueue levels,
DOT that parses, pictures that open."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import itertools
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.builders import by_name, leaf, parent
from tests.terminal import run_on_terminal
from volcano_topology.api import HyperNode
from volcano_topology.cli import main
from volcano_topology.views import formats, picture
from volcano_topology.views.formats import ExportError, SlurmNames
from volcano_topology.views.hostlist import HostlistError, compress, expand
from volcano_topology.views.model import Topology
from volcano_topology.views.treeview import render_tree

CLI = [sys.executable, "-m", "volcano_topology.cli"]


@cache
def emulated(model: str) -> dict[str, HyperNode]:
    from volcano_topology_emulated.provider import EmulatedProvider

    from volcano_topology import registry
    from volcano_topology.discover import discover_once

    provider = registry.instantiate(registry.load(["emulated"])[0]["emulated"], {"modelFile": model})
    assert isinstance(provider, EmulatedProvider)
    return asyncio.run(discover_once("emulated", provider, quiet=0.2)).hypernodes


def mixed() -> dict[str, HyperNode]:
    """Two depths, odd names, unpadded and padded numbers side by side."""
    return by_name(
        leaf("rack-1", "node8", "node9", "node10"),
        leaf("rack-2", "node01", "node02", "x"),
        leaf("rack-10", "gpu-a7", "gpu-a08"),
        parent("row-a", "rack-1", "rack-2"),
        parent("top", "row-a", "rack-10", tier=3),
    )


def every_view() -> list[Topology]:
    return [Topology.of(emulated("small-64")), Topology.of(emulated("rails-256")), Topology.of(mixed())]


# -- an independent reading of Slurm's hostlist syntax (not the exporter's own parser) -----------------


def slurm_names(expression: str) -> list[str]:
    names = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", expression):
        if plain:
            names.append(plain)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            names += [prefix + str(n).zfill(len(low)) for n in range(int(low), int(high or low) + 1)]
    return names


def parse_topology_conf(text: str) -> dict[str, dict[str, list[str]]]:
    switches: dict[str, dict[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = dict(item.split("=", 1) for item in line.split())
        assert set(fields) <= {"SwitchName", "Switches", "Nodes"}, line
        name = fields["SwitchName"]
        assert name not in switches, f"switch {name} defined twice"
        switches[name] = {"switches": slurm_names(fields.get("Switches", "")) if "Switches" in fields else [],
                          "nodes": slurm_names(fields.get("Nodes", "")) if "Nodes" in fields else []}  # fmt: skip
    return switches


def check_slurm_tree(switches: dict[str, dict[str, list[str]]], view: Topology, host: dict[str, str]) -> None:
    nodes = [n for s in switches.values() for n in s["nodes"]]
    assert sorted(nodes) == sorted(host[n] for homes in view.node_homes() for n in [homes])  # every node once
    assert len(nodes) == len(set(nodes))
    children = [c for s in switches.values() for c in s["switches"]]
    assert set(children) <= set(switches), "a switch names an undefined child"
    assert len(children) == len(set(children)), "a switch has two parents"
    roots = set(switches) - set(children)
    reached, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        reached.add(name)
        stack += switches[name]["switches"]
    assert reached == set(switches), "every switch reachable from a top switch"
    assert all(s["switches"] or s["nodes"] for s in switches.values()), "no empty switch"
    for name, switch in switches.items():  # the same tree as the HyperNodes
        assert sorted(switch["switches"]) == view.children[name]
        assert sorted(switch["nodes"]) == sorted(host[n] for n in view.direct_nodes[name])


@pytest.mark.parametrize("index", range(3))
def test_slurm_tree_follows_the_format_rules(index: int) -> None:
    view = every_view()[index]
    text = formats.slurm_tree(view)
    check_slurm_tree(parse_topology_conf(text), view, {n: n for n in view.node_homes()})


def test_slurm_names_map_through_regex_and_template() -> None:
    view = Topology.of(emulated("small-64"))
    names = SlurmNames(r"gpu(?P<n>\d+)", "dgx-{n}")
    switches = parse_topology_conf(formats.slurm_tree(view, names))
    check_slurm_tree(switches, view, {n: "dgx-" + n.removeprefix("gpu") for n in view.node_homes()})
    assert switches["leaf-000"]["nodes"][0] == "dgx-01"
    with pytest.raises(ExportError, match="node gpu01 does not match --slurm-name-regex"):
        formats.slurm_tree(view, SlurmNames(r"cpu\d+"))
    with pytest.raises(ExportError, match="both map to Slurm host name same"):
        formats.slurm_tree(view, SlurmNames(None, "same"))
    with pytest.raises(ExportError, match=r"uses \{host\}"):
        SlurmNames(None, "{host}")


@pytest.mark.parametrize("index", range(3))
def test_slurm_yaml_tree_and_blocks(index: int) -> None:
    view = every_view()[index]
    text = formats.slurm_yaml(view)
    topologies = yaml.safe_load(text)
    tree, block = topologies
    assert list(tree) == ["topology", "cluster_default", "tree"]  # "topology" must come first
    assert tree["cluster_default"] is True
    assert block["cluster_default"] is False
    assert [t["cluster_default"] for t in topologies].count(True) == 1
    switches = {
        s["switch"]: {"switches": slurm_names(s.get("children", "")) if "children" in s else [],
                      "nodes": slurm_names(s.get("nodes", "")) if "nodes" in s else []}
        for s in tree["tree"]["switches"]
    }  # fmt: skip
    check_slurm_tree(switches, view, {n: n for n in view.node_homes()})
    blocks = block["block"]["blocks"]
    names = [n for b in blocks for n in slurm_names(b["nodes"])]
    assert len(names) == len(set(names))
    lowest = min(view.tier(n) or 0 for n in view.leaves())
    assert {b["block"] for b in blocks} == {n for n in view.hypernodes if view.tier(n) == lowest}
    sizes = block["block"]["block_sizes"]
    assert sizes[0] == min(len(slurm_names(b["nodes"])) for b in blocks)
    assert all(b == a * 2 for a, b in itertools.pairwise(sizes))  # successive powers of two


def test_slurm_yaml_blocks_from_a_chosen_tier() -> None:
    view = Topology.of(emulated("small-64"))
    block = yaml.safe_load(formats.slurm_yaml(view, block_tier=2))[1]["block"]
    assert [b["block"] for b in block["blocks"]] == ["spine-00", "spine-01"]
    assert block["blocks"][0]["nodes"] == "gpu[01-32]"
    assert block["block_sizes"] == [32, 64]
    with pytest.raises(ExportError, match="--block-tier 7: no HyperNode is at that tier"):
        formats.slurm_yaml(view, block_tier=7)


def test_slurm_yaml_names_the_slurm_release_that_reads_it() -> None:
    """topology.yaml arrived in Slurm 25.05 (topology.conf(5) of 23.11-24.11 never mentions it): not 23.11."""
    text = formats.slurm_yaml(Topology.of(emulated("small-64")))
    assert text.startswith("# Slurm topology.yaml (Slurm 25.05 and later;")
    assert "23.11" not in text
    guide = (Path(__file__).parents[2] / "docs" / "views.md").read_text()
    assert "`topology.yaml` (Slurm 25.05+" in guide and "23.11" not in guide


def test_slurm_refuses_a_switch_name_slurm_cannot_hold() -> None:
    """topology.conf(5)/topology.yaml(5): a switch name "cannot be longer than 64 characters"; HyperNodes can be 253."""
    fits, too_long = "s" * 64, "s" * 65
    ok = Topology.of(by_name(leaf("leaf-a", "n1"), parent(fits, "leaf-a")))
    assert f"SwitchName={fits} Switches=leaf-a" in formats.slurm_tree(ok)
    view = Topology.of(by_name(leaf("leaf-a", "n1"), parent(too_long, "leaf-a")))
    for export in (formats.slurm_tree, formats.slurm_yaml):
        with pytest.raises(ExportError, match=f"HyperNode {too_long} is 65 characters: a Slurm switch name cannot"):
            export(view)
    assert "digraph" in formats.dot(view)  # other formats have no such limit


def test_block_sizes() -> None:
    assert formats.block_sizes([8] * 8) == [8, 16, 32, 64]
    assert formats.block_sizes([8, 8, 8]) == [8, 16]
    assert formats.block_sizes([5]) == [5]


@pytest.mark.parametrize("index", range(3))
def test_node_labels_round_trip_to_the_same_tree(index: int) -> None:
    view = every_view()[index]
    labels = formats.node_labels(view)
    parents, homes = formats.tree_from_labels(labels, formats.DEFAULT_LABEL_PREFIX)
    assert homes == {node: found[0] for node, found in view.node_homes().items()}
    expected = {n: view.parents[n][0] for n in view.hypernodes if view.parents[n]}
    assert parents == expected
    for node, values in labels.items():  # one label per tier on the node's path, no other
        chain = [homes[node], *view.ancestors(homes[node])]
        assert values == {formats.label_key(formats.DEFAULT_LABEL_PREFIX, view.tier(h) or 0): h for h in chain}


def test_node_labels_as_kubectl_and_patch() -> None:
    view = Topology.of(mixed())
    labels = formats.node_labels(view, "net.example.com")
    commands = formats.labels_as_kubectl(labels, view.tiers(), "net.example.com").splitlines()
    assert "kubectl label node node8 --overwrite net.example.com/tier-1=rack-1 net.example.com/tier-2=row-a " \
        "net.example.com/tier-3=top" in commands  # fmt: skip
    # rack-10 sits right under the top: its nodes have no tier-2 HyperNode, so a stale tier-2 label goes
    assert "kubectl label node gpu-a7 --overwrite net.example.com/tier-1=rack-10 net.example.com/tier-3=top " \
        "net.example.com/tier-2-" in commands  # fmt: skip
    patches = list(yaml.safe_load_all(formats.labels_as_patch(labels)))
    assert {p["metadata"]["name"]: p["metadata"]["labels"] for p in patches} == labels
    assert all(p["kind"] == "Node" and p["apiVersion"] == "v1" for p in patches)


def test_labels_that_are_not_nested_are_refused() -> None:
    labels = {"a": {"p/tier-1": "l1", "p/tier-2": "s1"}, "b": {"p/tier-1": "l1", "p/tier-2": "s2"}}
    with pytest.raises(ExportError, match="not nested: l1 is under s1 and s2"):
        formats.tree_from_labels(labels, "p")


def test_label_values_and_prefix_are_checked() -> None:
    long = "x" * 70
    with pytest.raises(ExportError, match=f"HyperNode {long} cannot be a label value"):
        formats.node_labels(Topology.of(by_name(leaf(long, "n1"))))
    with pytest.raises(ExportError, match="--label-prefix 'Bad Prefix'"):
        formats.node_labels(Topology.of(by_name(leaf("a", "n1"))), "Bad Prefix")


def test_kueue_levels_one_per_tier_hostname_lowest() -> None:
    topology = formats.kueue_topology(Topology.of(emulated("small-64")))
    assert topology["apiVersion"] == "kueue.x-k8s.io/v1alpha1"
    assert [level["nodeLabel"] for level in topology["spec"]["levels"]] == [
        "volcano-topology.io/tier-3", "volcano-topology.io/tier-2", "volcano-topology.io/tier-1",
        "kubernetes.io/hostname",
    ]  # fmt: skip
    documents = list(yaml.safe_load_all(formats.kueue(Topology.of(emulated("small-64")))))
    assert documents[0] == topology
    assert len(documents) == 1 + 64
    deep = by_name(leaf("l1", "n1"), *(parent(f"p{t}", f"p{t - 1}" if t > 2 else "l1", tier=t) for t in range(2, 9)))
    with pytest.raises(ExportError, match="8 tiers and the hostname make 9 levels; Kueue allows 8"):
        formats.kueue_topology(Topology.of(deep))


def test_kueue_labels_every_node_at_every_level() -> None:
    """Kueue's TAS lists only Nodes with every level's label: a skipped tier or a shallower tree must not drop nodes."""
    skipped = by_name(leaf("rack-1", "n1", "n2"), leaf("rack-2", "n3"), parent("row", "rack-1"),
                      parent("top", "row", "rack-2", tier=3), leaf("solo", "n4"))  # fmt: skip
    view = Topology.of(skipped)
    documents = list(yaml.safe_load_all(formats.kueue(view)))
    levels = [level["nodeLabel"] for level in documents[0]["spec"]["levels"][:-1]]
    labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in documents[1:]}
    assert all(set(found) == set(levels) for found in labels.values())  # none left out by Kueue
    t1, t2, t3 = (formats.label_key(formats.DEFAULT_LABEL_PREFIX, t) for t in (1, 2, 3))
    assert labels["n1"] == {t1: "rack-1", t2: "row", t3: "top"}
    assert labels["n3"] == {t1: "rack-2", t2: "rack-2", t3: "top"}  # tier 2 skipped: rack-2 stands in
    assert labels["n4"] == {t1: "solo", t2: "solo", t3: "solo"}  # a tree of its own stays its own domain
    parents, homes = formats.tree_from_labels(labels, formats.DEFAULT_LABEL_PREFIX)  # still nested
    assert parents == {"rack-1": "row", "row": "top", "rack-2": "top"}
    assert homes == {"n1": "rack-1", "n2": "rack-1", "n3": "rack-2", "n4": "solo"}


def test_no_label_patch_creates_a_node_the_cluster_does_not_have() -> None:
    """Server-side apply of a Node patch creates a missing Node: a member naming one gets no patch."""
    view = Topology.of(by_name(leaf("a", "n1", "ghost"), parent("s", "a")), {"n1": {}})
    assert set(formats.node_labels(view)) == {"n1"}
    assert [d["metadata"]["name"] for d in list(yaml.safe_load_all(formats.kueue(view)))[1:]] == ["n1"]
    assert "ghost" not in formats.labels_as_patch(formats.node_labels(view))
    # from a file without the cluster's Nodes, every named node is labelled
    assert set(formats.node_labels(Topology.of(by_name(leaf("a", "n1", "ghost"))))) == {"n1", "ghost"}


def test_node_patches_use_libyaml_and_say_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """16,384 Node patches took 6 s with PyYAML's pure-Python dumper (the kueue export 12 s): libyaml's, same text."""
    labels = formats.kueue_node_labels(Topology.of(emulated("small-64")))
    documents = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": v}} for n, v in labels.items()]
    expected = yaml.dump_all(documents, Dumper=yaml.SafeDumper, sort_keys=False)

    def pure_python(*args: object, **kwargs: object) -> str:
        raise AssertionError("the pure-Python dumper was used")

    monkeypatch.setattr(yaml, "safe_dump_all", pure_python)
    assert formats.labels_as_patch(labels) == expected


def test_every_export_refuses_a_broken_tree() -> None:
    broken = Topology.of(by_name(leaf("a", "n1"), leaf("b", "n1"), parent("s", "a", "b")))
    for export in (formats.slurm_tree, formats.slurm_yaml, formats.node_labels, formats.kueue, formats.dot,
                   picture.layout):  # fmt: skip
        with pytest.raises(ExportError, match="node n1 is already a member of HyperNode a"):
            export(broken)


def test_dot_parses_with_one_rank_per_tier() -> None:
    import pydot  # a test dependency: never skipped

    view = Topology.of(emulated("small-64"))
    (graph,) = pydot.graph_from_dot_data(formats.dot(view))
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in graph.get_edges()}
    assert ("core-0", "spine-00") in edges
    assert ("leaf-000", "leaf-000/nodes") in edges
    assert len(edges) == 10 + 8  # parent -> child, leaf -> its nodes
    ranks = {s.get_name().strip('"'): [n.get_name().strip('"') for n in s.get_nodes() if n.get_name() != "node"]
             for s in graph.get_subgraphs()}  # fmt: skip
    assert ranks["tier-2"] == ["spine-00", "spine-01"]
    assert all(s.get("rank") == "same" for s in graph.get_subgraphs())
    (quoted,) = pydot.graph_from_dot_data(formats.dot(Topology.of(by_name(leaf("a.b", "n1")))))
    assert quoted.get_node('"a.b/nodes"')


def test_json_is_the_tree_as_data() -> None:
    data = json.loads(formats.as_json(Topology.of(emulated("small-64"))))
    assert data["roots"] == ["core-0"]
    assert data["tiers"][0] == {"tier": 3, "name": "core"}
    leaf0 = next(h for h in data["hypernodes"] if h["name"] == "leaf-000")
    assert leaf0["parent"] == "spine-00"
    assert leaf0["nodes"][:2] == ["gpu01", "gpu02"]
    assert data["nodes"]["gpu64"] == "leaf-007"
    assert next(h for h in data["hypernodes"] if h["name"] == "core-0")["nodeCount"] == 64


def test_svg_is_xml_with_a_box_per_hypernode() -> None:
    view = Topology.of(emulated("small-64"))
    root = ET.fromstring(picture.svg(picture.layout(view)))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"core-0", "spine-01", "leaf-007", "gpu[57-64]"} <= set(texts)
    assert len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) == 1 + 11


def test_large_trees_summarise_their_leaves() -> None:
    view = Topology.of(emulated("medium-1024"))
    scene = picture.layout(view, max_leaves=8)
    groups = [b for b in scene.boxes if b.kind == "group"]
    assert groups
    assert sum(int(b.lines[1].split()[0]) for b in groups) == 1024  # every node counted once
    assert not any(b.key in view.hypernodes and view.direct_nodes[b.key] for b in scene.boxes)
    everything = picture.layout(view, max_leaves=10_000)
    assert len(everything.boxes) == len(view.hypernodes)


def test_png_opens_and_is_not_blank() -> None:
    import PIL.Image as image_module  # a test dependency: never skipped

    scene = picture.layout(Topology.of(emulated("small-64")))
    done: list[int] = []
    data = picture.png(scene, lambda n, total: done.append(n))
    image = image_module.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (scene.width, scene.height)
    assert image.size[0] > 800
    colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None
    assert len(colours) > 10  # boxes, text and lines, not one flat colour
    dark = sum(count for count, (r, g, b) in colours if r + g + b < 200)
    assert dark > 500  # text was drawn
    assert done[-1] == len(scene.boxes)  # progress reported per box


# -- hostlists -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expression"),
    [
        (["gpu01", "gpu02", "gpu03"], "gpu[01-03]"),
        (["gpu8", "gpu9", "gpu10"], "gpu[8-10]"),
        ([f"gpu{i:02d}" for i in range(1, 17)], "gpu[01-16]"),
        (["n1", "n3", "n4", "x", "n007"], "n007,n[1,3-4],x"),
        (["leaf-000", "leaf-001"], "leaf-[000-001]"),
        (["a"], "a"),
        (["r1-n1", "r1-n2", "r2-n1"], "r1-n[1-2],r2-n1"),
    ],
)
def test_compress(names: list[str], expression: str) -> None:
    assert compress(names) == expression
    assert sorted(expand(expression)) == sorted(names)
    assert sorted(slurm_names(expression)) == sorted(names)


@given(st.lists(st.from_regex(r"[a-z]{1,3}(-?[0-9]{1,4})?", fullmatch=True), min_size=1, max_size=40))
def test_compress_expands_to_the_same_names(names: list[str]) -> None:
    expression = compress(names)
    assert sorted(expand(expression)) == sorted(set(names))
    assert sorted(slurm_names(expression)) == sorted(set(names))


@pytest.mark.parametrize("bad", ["a[1-", "a[x]", "a[3-1]", "a,,b", "a[1]b[2]"])
def test_bad_hostlists(bad: str) -> None:
    with pytest.raises(HostlistError):
        expand(bad)


# -- the command -----------------------------------------------------------------------------


def test_cli_export_writes_each_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "small.yaml"
    source.write_text(yaml.safe_dump_all([h.to_dict() for h in emulated("small-64").values()]))
    pictures = ["png"] if importlib.util.find_spec("PIL") else []  # Pillow is an optional dependency
    for fmt in ("json", "dot", "slurm-tree", "slurm-yaml", "kueue", "node-labels", "svg", *pictures):
        target = tmp_path / f"out.{fmt}"
        assert main(["export", "--format", fmt, str(source), "-o", str(target)]) == 0, capsys.readouterr().err
        assert target.stat().st_size > 100
        assert "\r" not in capsys.readouterr().err  # progress stays quiet when not on a terminal
    monkeypatch.setattr(sys, "stdin", io.StringIO(source.read_text()))
    assert main(["export", "-f", "slurm-tree", "-", "--slurm-name-template", "h-{name}"]) == 0
    assert "SwitchName=leaf-000 Nodes=h-gpu[01-08]" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([h.to_dict() for h in (leaf("a", "n1"), leaf("b", "n1"))]))
    assert main(["export", "-f", "slurm-tree", str(broken)]) == 2
    refused = capsys.readouterr()
    assert "node n1 is already a member of HyperNode a" in refused.err
    assert refused.out == ""


def test_cli_export_png_to_standard_output_when_piped() -> None:
    source = yaml.safe_dump_all([h.to_dict() for h in mixed().values()])
    done = subprocess.run([*CLI, "export", "-f", "png", "-"], input=source.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"\x89PNG")
    assert done.stderr == b""  # no progress, no carriage returns, when piped


def test_png_without_pillow_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    scene = picture.layout(Topology.of(mixed()))
    with pytest.raises(ExportError, match="--format png needs Pillow: pip install pillow"):
        picture.png(scene)


def test_progress_shows_on_a_terminal_only() -> None:
    """stderr a terminal (a pty), stdout a pipe: the progress line is there; piped, it is not (checked above)."""
    source = yaml.safe_dump_all([h.to_dict() for h in mixed().values()])
    done, seen = run_on_terminal([*CLI, "export", "-f", "svg", "-"], stdin=source.encode(), timeout=60)
    assert done.returncode == 0
    assert b"\rreading HyperNodes" in seen
    assert done.stdout.startswith(b"<svg")


def test_slurm_refuses_an_empty_switch_and_regex_members_need_the_nodes() -> None:
    regex = {"type": "Node", "selector": {"regexMatch": {"pattern": "^gpu"}}}
    rack = HyperNode.model_validate({"metadata": {"name": "rack"}, "spec": {"tier": 1, "members": [regex]}})
    objects = {"rack": rack, "top": parent("top", "rack")}
    with pytest.raises(ExportError, match=r"HyperNode rack has no nodes and no child HyperNodes.*--nodes"):
        formats.slurm_tree(Topology.of(objects))
    text = formats.slurm_tree(Topology.of(objects, {"gpu1": {}, "gpu2": {}, "cpu1": {}}))
    assert "SwitchName=rack Nodes=gpu[1-2]" in text


@st.composite
def random_trees(draw: st.DrawFn) -> dict[str, HyperNode]:
    """Valid trees of mixed depth: each HyperNode at a tier above its children, each node in one leaf, several roots."""
    count = draw(st.integers(1, 12))
    tiers = [draw(st.integers(1, 4)) for _ in range(count)]
    objects: dict[str, HyperNode] = {}
    parent_of: dict[int, int] = {}
    for index in range(count):
        above = [j for j in range(count) if tiers[j] > tiers[index]]
        if above and draw(st.booleans()):
            parent_of[index] = draw(st.sampled_from(above))
    node = 0
    for index in range(count):
        children = [f"h{j}" for j in range(count) if parent_of.get(j) == index]
        if children:
            objects[f"h{index}"] = parent(f"h{index}", *children, tier=tiers[index])
        else:
            width = draw(st.integers(1, 5))
            # nodes sit at the lowest tier (the scheduler's rule); a leaf may still hang under any tier
            objects[f"h{index}"] = leaf(f"h{index}", *(f"n{node + k:02d}" for k in range(width)), tier=1)
            node += width
    return objects


@given(random_trees())
def test_any_valid_tree_exports_by_the_rules(objects: dict[str, HyperNode]) -> None:
    view = Topology.of(objects)
    assert not [f for f in view.flags if f.fatal]
    check_slurm_tree(parse_topology_conf(formats.slurm_tree(view)), view, {n: n for n in view.node_homes()})
    parents, homes = formats.tree_from_labels(formats.node_labels(view), formats.DEFAULT_LABEL_PREFIX)
    assert homes == {node: found[0] for node, found in view.node_homes().items()}
    assert parents == {n: view.parents[n][0] for n in view.hypernodes if view.parents[n]}
    text = render_tree(view)
    for name in objects:  # every HyperNode shown exactly once
        assert sum(line.lstrip("│├└─ ").startswith(f"{name}  (") for line in text.splitlines()) == 1
