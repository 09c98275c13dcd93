"""Exports of a HyperNode tree to other schedulers' and tools' formats. Pure: text in, text out.

- ``slurm-tree``: Slurm's ``topology.conf`` for the tree plugin, one ``SwitchName=`` line per
  HyperNode with its child switches (``Switches=``) and its nodes (``Nodes=``) as hostlists.
- ``slurm-yaml``: Slurm's ``topology.yaml`` (Slurm 25.05+; older Slurm reads only ``topology.conf``):
  a ``tree`` topology (the same switches, the cluster default) and a ``block`` topology whose
  blocks are the HyperNodes of one tier.
- ``node-labels``: one label per tier on every node, ``PREFIX/tier-N=<HyperNode>``, strictly
  nested (a node's tier-N value is the parent of its tier-(N-1) value), as ``kubectl label``
  commands or a server-side-apply patch; :func:`tree_from_labels` reads them back.
- ``kueue``: a Kueue ``Topology`` with one level per tier, highest first, and
  ``kubernetes.io/hostname`` lowest, plus the node labels its levels name.
- ``dot``: Graphviz, one rank per tier; ``json``: the tree as data.

Every export but ``json`` (which lists them) refuses a tree that breaks the scheduler's rules
(a node in two leaves, two parents, a cycle, a member naming nothing): the error lists what is
wrong. The Slurm formats also refuse a HyperNode with neither nodes nor child HyperNodes (an
empty switch, which Slurm does not accept) and a HyperNode name longer than a Slurm switch
name may be (64 characters; a HyperNode name may have 253).
"""

from __future__ import annotations

import itertools
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from volcano_topology import kubenames
from volcano_topology.views.hostlist import compress
from volcano_topology.views.model import Topology

HOSTNAME_LABEL = "kubernetes.io/hostname"
DEFAULT_LABEL_PREFIX = "volcano-topology.io"
KUEUE_API_VERSION = "kueue.x-k8s.io/v1alpha1"
KUEUE_MAX_LEVELS = 8  # Kueue's CRD: spec.levels maxItems
_SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SLURM_MAX_SWITCH_NAME = 64  # topology.conf(5) SwitchName, topology.yaml(5) switch: "cannot be longer than 64"


class ExportError(ValueError):
    """The tree cannot be exported in this format: the message says what is in the way."""


def check_exportable(view: Topology) -> None:
    fatal = [f for f in view.flags if f.fatal]
    if fatal:
        listed = "; ".join(f"{f.name}: {f.message}" if f.name else f.message for f in fatal[:5])
        more = f" (and {len(fatal) - 5} more)" if len(fatal) > 5 else ""
        raise ExportError(f"the tree breaks the scheduler's rules, so it is not exported: {listed}{more}")


# -- node names for Slurm ------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmNames:
    """Kubernetes node name -> Slurm host name: ``regex`` (fullmatch, named groups) and ``template``.

    The template may use ``{name}`` (the node name) and the regex's named groups. A node the
    regex does not match, or two nodes mapped to one host name, is an error naming them.
    """

    regex: str | None = None
    template: str = "{name}"

    def __post_init__(self) -> None:
        try:
            groups = set(re.compile(self.regex).groupindex) if self.regex else set()
        except re.error as exc:
            raise ExportError(f"--slurm-name-regex {self.regex!r}: {exc}") from exc
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        except ValueError as exc:
            raise ExportError(f"--slurm-name-template {self.template!r}: {exc}") from exc
        unknown = sorted(fields - groups - {"name"})
        if unknown:
            raise ExportError(
                f"--slurm-name-template {self.template!r} uses {{{unknown[0]}}}, which is not one of: "
                + ", ".join(sorted({"name", *groups}))
            )

    def map_all(self, nodes: list[str]) -> dict[str, str]:
        pattern = re.compile(self.regex) if self.regex else None
        mapped: dict[str, str] = {}
        for node in nodes:
            groups: dict[str, str] = {}
            if pattern is not None:
                match = pattern.fullmatch(node)
                if match is None:
                    raise ExportError(f"node {node} does not match --slurm-name-regex {self.regex!r}")
                groups = {k: v or "" for k, v in match.groupdict().items()}
            host = self.template.format(**{"name": node, **groups})
            if not host or any(c in host for c in " ,[]=#"):
                raise ExportError(f"node {node} maps to {host!r}, which is not a Slurm host name")
            mapped[node] = host
        seen: dict[str, str] = {}
        for node, host in sorted(mapped.items()):
            if host in seen:
                raise ExportError(f"nodes {seen[host]} and {node} both map to Slurm host name {host}")
            seen[host] = node
        return mapped


# -- Slurm ---------------------------------------------------------------------------------


def _switches(view: Topology, names: SlurmNames) -> list[tuple[str, list[str], list[str]]]:
    """(switch, child switches, Slurm host names) for each HyperNode, lowest tier first."""
    check_exportable(view)
    empty = [n for n in sorted(view.hypernodes) if not view.children[n] and not view.direct_nodes[n]]
    if empty:
        hint = "" if view.nodes is not None else " (its members may select Nodes: give the cluster's with --nodes)"
        raise ExportError(f"HyperNode {empty[0]} has no nodes and no child HyperNodes: an empty switch{hint}")
    long = [n for n in sorted(view.hypernodes) if len(n) > SLURM_MAX_SWITCH_NAME]
    if long:
        raise ExportError(
            f"HyperNode {long[0]} is {len(long[0])} characters: a Slurm switch name cannot be longer than "
            f"{SLURM_MAX_SWITCH_NAME}" + (f" ({len(long)} HyperNodes are)" if len(long) > 1 else "")
        )
    hosts = names.map_all(sorted({n for found in view.direct_nodes.values() for n in found}))
    order = sorted(view.hypernodes, key=lambda n: (view.tier(n) or 0, n))
    return [(n, view.children[n], [hosts[node] for node in view.direct_nodes[n]]) for n in order]


def slurm_tree(view: Topology, names: SlurmNames | None = None) -> str:
    lines = ["# Slurm topology.conf (topology/tree), written by volcano-topology from HyperNodes"]
    for switch, children, hosts in _switches(view, names or SlurmNames()):
        line = f"SwitchName={switch}"
        if children:
            line += f" Switches={compress(children)}"
        if hosts:
            line += f" Nodes={compress(hosts)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def slurm_yaml(
    view: Topology, names: SlurmNames | None = None, *, block_tier: int | None = None, name: str = "volcano-topology"
) -> str:
    """``topology.yaml``: the tree (cluster default) and blocks at ``block_tier`` (default: the lowest node tier)."""
    names = names or SlurmNames()
    switches = []
    for switch, children, hosts in _switches(view, names):
        entry: dict[str, Any] = {"switch": switch}
        if children:
            entry["children"] = compress(children)
        if hosts:
            entry["nodes"] = compress(hosts)
        switches.append(entry)
    topologies: list[dict[str, Any]] = [{"topology": f"{name}-tree", "cluster_default": True,
                                         "tree": {"switches": switches}}]  # fmt: skip
    leaves = view.leaves()
    if leaves:
        tier = block_tier if block_tier is not None else min(view.tier(n) or 0 for n in leaves)
        blocks = [n for n in view.walk() if view.tier(n) == tier]
        if not blocks:
            used = ", ".join(str(t) for t in view.tiers())
            raise ExportError(f"--block-tier {tier}: no HyperNode is at that tier (tiers: {used})")
        host_of = names.map_all(sorted({n for found in view.direct_nodes.values() for n in found}))
        entries = [{"block": b, "nodes": compress(host_of[n] for n in view.nodes_under(b))} for b in blocks]
        entries = [e for e in entries if e["nodes"]]
        if entries:
            topologies.append({"topology": f"{name}-block", "cluster_default": False, "block": {
                "block_sizes": block_sizes([len(view.nodes_under(b)) for b in blocks if view.nodes_under(b)]),
                "blocks": entries}})  # fmt: skip
    header = (
        "# Slurm topology.yaml (Slurm 25.05 and later; older Slurm reads only topology.conf: --format slurm-tree),\n"
        "# written by volcano-topology from HyperNodes\n"
    )
    return header + yaml.safe_dump(topologies, sort_keys=False)


def block_sizes(sizes: list[int]) -> list[int]:
    """The base block size (the smallest block) and each power-of-two multiple up to all blocks together.

    Slurm requires each size after the first to be a power of two times larger than the one before.
    """
    base = min(sizes)
    result = [base]
    while result[-1] * 2 <= base * len(sizes):
        result.append(result[-1] * 2)
    return result


# -- node labels and Kueue -----------------------------------------------------------------


def label_key(prefix: str, tier: int) -> str:
    return f"{prefix}/tier-{tier}"


def node_labels(view: Topology, prefix: str = DEFAULT_LABEL_PREFIX) -> dict[str, dict[str, str]]:
    """Node -> {``PREFIX/tier-N``: the HyperNode at tier N above it}, for every tier on its path.

    When the cluster's Nodes are known, only nodes that exist: a patch for a missing one would create it.
    """
    check_exportable(view)
    if problems := kubenames.qualified_name_problems(label_key(prefix, 1)):
        raise ExportError(f"--label-prefix {prefix!r}: {label_key(prefix, 1)!r} is not a label key: {problems[0]}")
    labels: dict[str, dict[str, str]] = {}
    for home, nodes in sorted(view.direct_nodes.items()):
        chain = [home, *view.ancestors(home)]
        values: dict[str, str] = {}
        for hypernode in chain:
            if problems := kubenames.label_value_problems(hypernode):
                raise ExportError(f"HyperNode {hypernode} cannot be a label value: {problems[0]}")
            values[label_key(prefix, view.tier(hypernode) or 0)] = hypernode
        for node in nodes:
            # A member naming a Node the cluster does not have gets no labels: a server-side-apply patch would
            # create that Node (the tree flags the member). Without the cluster's Nodes, every named node is kept.
            if view.nodes is None or node in view.nodes:
                labels[node] = dict(sorted(values.items()))
    return dict(sorted(labels.items()))


def labels_as_kubectl(labels: Mapping[str, Mapping[str, str]], tiers: list[int], prefix: str) -> str:
    """``kubectl label`` commands; a tier a node has no HyperNode at is removed (``key-``), so labels stay nested."""
    lines = []
    for node, values in labels.items():
        sets = [f"{k}={v}" for k, v in values.items()]
        removes = [f"{label_key(prefix, t)}-" for t in sorted(tiers) if label_key(prefix, t) not in values]
        lines.append(" ".join(["kubectl label node", node, "--overwrite", *sets, *removes]))
    return "\n".join(lines) + ("\n" if lines else "")


def labels_as_patch(labels: Mapping[str, Mapping[str, str]]) -> str:
    """Node server-side-apply patches: ``kubectl apply --server-side --field-manager=volcano-topology-labels -f``."""
    documents = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": dict(v)}}
                 for n, v in labels.items()]  # fmt: skip
    # libyaml's dumper when PyYAML has it (the same text): 16,384 patches take 1 s instead of 6
    return yaml.dump_all(documents, Dumper=_SAFE_DUMPER, sort_keys=False)


def tree_from_labels(labels: Mapping[str, Mapping[str, str]], prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """(HyperNode -> parent, node -> leaf) read back from node labels; refuses labels that are not nested."""
    parents: dict[str, str] = {}
    homes: dict[str, str] = {}
    pattern = re.compile(re.escape(prefix) + r"/tier-(\d+)")
    for node, values in labels.items():
        chain = sorted(
            ((int(m.group(1)), value) for key, value in values.items() if (m := pattern.fullmatch(key))),
        )
        if not chain:
            continue
        homes[node] = chain[0][1]
        # a HyperNode standing in for a tier it is not at (kueue's filled levels) repeats: one step, not an edge
        steps = [value for index, (_, value) in enumerate(chain) if index == 0 or chain[index - 1][1] != value]
        for child, parent in itertools.pairwise(steps):
            if parents.setdefault(child, parent) != parent:
                raise ExportError(f"labels are not nested: {child} is under {parents[child]} and {parent}")
    return parents, homes


def kueue_topology(
    view: Topology, prefix: str = DEFAULT_LABEL_PREFIX, name: str = "volcano-topology"
) -> dict[str, Any]:
    """A Kueue ``Topology``: one level per tier (highest first), then ``kubernetes.io/hostname``."""
    check_exportable(view)
    tiers = view.tiers()
    if len(tiers) + 1 > KUEUE_MAX_LEVELS:
        raise ExportError(f"{len(tiers)} tiers and the hostname make {len(tiers) + 1} levels; Kueue allows 8")
    if problems := kubenames.dns1123_subdomain_problems(name):
        raise ExportError(f"--name {name!r} is not a valid object name: {problems[0]}")
    levels = [{"nodeLabel": label_key(prefix, t)} for t in tiers] + [{"nodeLabel": HOSTNAME_LABEL}]
    return {"apiVersion": KUEUE_API_VERSION, "kind": "Topology", "metadata": {"name": name}, "spec": {"levels": levels}}


def kueue(view: Topology, prefix: str = DEFAULT_LABEL_PREFIX, name: str = "volcano-topology") -> str:
    """The Topology, then the Node label patches its levels need (one multi-document YAML)."""
    topology = kueue_topology(view, prefix, name)
    labels = kueue_node_labels(view, prefix)
    return yaml.safe_dump(topology, sort_keys=False) + "---\n" + labels_as_patch(labels)


def kueue_node_labels(view: Topology, prefix: str = DEFAULT_LABEL_PREFIX) -> dict[str, dict[str, str]]:
    """:func:`node_labels` with every level on every node, as Kueue needs.

    Kueue's TAS lists only Nodes carrying every level's label (``client.HasLabels(levels)``), so a node
    with no HyperNode at some tier (a tier skipped, or a tree shallower than the others) would be
    silently left out. Such a tier is given the HyperNode standing in for it: the nearest one below
    (for a skipped tier or one above the node's root), else its leaf. A one-node-set domain, still nested.
    """
    tiers = sorted(view.tiers())
    filled: dict[str, dict[str, str]] = {}
    for node, values in node_labels(view, prefix).items():
        present = [values[label_key(prefix, t)] for t in tiers if label_key(prefix, t) in values]
        carry = present[0]  # below the leaf's tier: the leaf
        full: dict[str, str] = {}
        for tier in tiers:
            carry = values.get(label_key(prefix, tier), carry)
            full[label_key(prefix, tier)] = carry
        filled[node] = full
    return filled


# -- DOT and JSON --------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(view: Topology) -> str:
    """Graphviz: a box per HyperNode, one rank per tier, a note per leaf with its nodes as a hostlist."""
    check_exportable(view)
    names = view.tier_names()
    lines = ["digraph hypernodes {", "  rankdir=TB;", '  node [shape=box, style=rounded, fontname="Helvetica"];']
    for tier in view.tiers():
        members = [n for n in view.walk() if view.tier(n) == tier]
        lines.append(f"  subgraph {_quote(f'tier-{tier}')} {{")
        lines.append("    rank=same;")
        for hypernode in members:
            label = f"{hypernode}\ntier {tier}" + (f" {names[tier]}" if tier in names else "")
            lines.append(f"    {_quote(hypernode)} [label={_quote(label)}];")
        lines.append("  }")
    for hypernode in view.walk():
        for child in view.children[hypernode]:
            lines.append(f"  {_quote(hypernode)} -> {_quote(child)};")
        nodes = view.direct_nodes[hypernode]
        if nodes:
            box = f"{hypernode}/nodes"
            label = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}\n{compress(nodes)}"
            lines.append(f"  {_quote(box)} [shape=note, label={_quote(label)}];")
            lines.append(f"  {_quote(hypernode)} -> {_quote(box)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def as_json(view: Topology) -> str:
    """The tree as data: tiers, each HyperNode (tier, parent, children, nodes, owner), each node's leaf."""
    names = view.tier_names()
    data = {
        "tiers": [{"tier": t, **({"name": names[t]} if t in names else {})} for t in view.tiers()],
        "roots": view.roots,
        "hypernodes": [
            {
                "name": n,
                "tier": view.tier(n),
                "tierName": view.tier_name(n),
                "parent": view.parents[n][0] if view.parents[n] else None,
                "children": view.children[n],
                "nodes": view.direct_nodes[n],
                "nodeCount": len(view.nodes_under(n)),
                "owner": view.owner(n),
            }
            for n in view.walk()
        ],
        "nodes": {node: homes[0] for node, homes in sorted(view.node_homes().items())},
        "problems": [{"hypernode": f.name, "message": f.message} for f in view.flags],
    }
    return json.dumps(data, indent=2) + "\n"
