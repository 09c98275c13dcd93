"""One read of a set of HyperNodes, for every view: parents, children, nodes, tiers, owners, problems. Pure.

``nodes`` (every Node's name -> labels) is optional: from a live cluster it is known, from
a file it usually is not. Without it, ``regexMatch``/``labelMatch`` members select no
names and the node checks that need the cluster's Nodes (members matching nothing,
Nodes in no leaf) are not made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from volcano_topology import ownership
from volcano_topology.api import HyperNode
from volcano_topology.status import SYNCED, member_names
from volcano_topology.tree import children_of, missing_member_problems, tree_problems


@dataclass(frozen=True)
class Flag:
    """A problem the views point out, attached to a HyperNode (``name``) or to the whole set (None)."""

    name: str | None
    message: str
    fatal: bool = False  # breaks the tree itself (two parents, a node in two leaves, ...): exports refuse it


@dataclass
class Topology:
    hypernodes: dict[str, HyperNode]
    nodes: dict[str, dict[str, str]] | None = None  # None: the cluster's Nodes are not known
    children: dict[str, list[str]] = field(default_factory=dict)  # HyperNode -> child HyperNodes that exist
    parents: dict[str, list[str]] = field(default_factory=dict)  # HyperNode -> HyperNodes listing it
    direct_nodes: dict[str, list[str]] = field(default_factory=dict)  # HyperNode -> the nodes its members select
    roots: list[str] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @classmethod
    def of(cls, hypernodes: Mapping[str, HyperNode], nodes: Mapping[str, Mapping[str, str]] | None = None) -> Topology:
        known = None if nodes is None else {name: dict(labels) for name, labels in nodes.items()}
        view = cls(dict(hypernodes), known)
        for name in sorted(view.hypernodes):
            view.children[name] = sorted({c for c in children_of(view.hypernodes[name]) if c in view.hypernodes})
            view.parents.setdefault(name, [])
        for name, kids in view.children.items():
            for child in kids:
                view.parents[child].append(name)
        for name in sorted(view.hypernodes):
            view.direct_nodes[name] = view._selected_nodes(name)
        # A HyperNode in two parents is drawn under its first; a cycle has no root, so it is cut at its smallest name.
        view.roots = [n for n in sorted(view.hypernodes) if not view.parents[n]]
        reached = view._reachable(view.roots)
        for name in sorted(view.hypernodes):
            if name not in reached:
                view.roots.append(name)
                reached |= view._reachable([name])
        view.flags = view._problems()
        return view

    # -- queries ------------------------------------------------------------------------

    def tier(self, name: str) -> int | None:
        spec = self.hypernodes[name].spec
        return spec.tier if spec is not None else None

    def tier_name(self, name: str) -> str | None:
        spec = self.hypernodes[name].spec
        return spec.tier_name if spec is not None else None

    def tiers(self) -> list[int]:
        """Every tier used, highest first."""
        return sorted({t for n in self.hypernodes if (t := self.tier(n)) is not None}, reverse=True)

    def tier_names(self) -> dict[int, str]:
        """Each tier's name: the first tierName given at that tier (by HyperNode name)."""
        names: dict[int, str] = {}
        for name in sorted(self.hypernodes):
            tier, tier_name = self.tier(name), self.tier_name(name)
            if tier is not None and tier_name:
                names.setdefault(tier, tier_name)
        return names

    def owner(self, name: str) -> str | None:
        """The provider owning it (volcano-topology's labels), else Volcano's source label, else None."""
        labels = self.hypernodes[name].metadata.labels or {}
        return ownership.owner_of(labels) or labels.get(ownership.SOURCE_LABEL)

    def synced(self, name: str) -> tuple[bool, str] | None:
        """The ``Synced`` condition as (ok, reason), or None when the object has none."""
        status = self.hypernodes[name].status
        for condition in (status.conditions or []) if status is not None else []:
            if condition.type == SYNCED:
                return condition.status == "True", condition.reason
        return None

    def nodes_under(self, name: str) -> list[str]:
        """Every node in this HyperNode's subtree (each once), sorted."""
        found: set[str] = set()
        for hypernode in self._reachable([name]):
            found.update(self.direct_nodes[hypernode])
        return sorted(found)

    def leaves(self) -> list[str]:
        """HyperNodes holding nodes directly, in tree order (siblings next to each other)."""
        return [n for n in self.walk() if self.direct_nodes[n]]

    def walk(self) -> list[str]:
        """Every HyperNode once, depth first from the roots, children sorted by name."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            order.append(name)
            for child in self.children[name]:
                visit(child)

        for root in self.roots:
            visit(root)
        return order

    def ancestors(self, name: str) -> list[str]:
        """Parent, grandparent, ...: the first parent at each step (a second parent is a flagged problem)."""
        chain: list[str] = []
        current = name
        while self.parents.get(current):
            current = self.parents[current][0]
            if current == name or current in chain:
                break  # a cycle (flagged)
            chain.append(current)
        return chain

    def node_homes(self) -> dict[str, list[str]]:
        """Node -> the HyperNodes whose members select it directly."""
        homes: dict[str, list[str]] = defaultdict(list)
        for name in sorted(self.hypernodes):
            for node in self.direct_nodes[name]:
                homes[node].append(name)
        return dict(homes)

    def flags_of(self, name: str) -> list[str]:
        return [f.message for f in self.flags if f.name == name]

    # -- building -----------------------------------------------------------------------

    def _selected_nodes(self, name: str) -> list[str]:
        nodes = self.nodes or {}
        selected: set[str] = set()
        for member in self.hypernodes[name].members:
            if member.type != "Node":
                continue
            exact = member.selector.exact_match if member.selector is not None else None
            if exact is not None:
                selected.add(exact.name)  # listed by name: shown even when the cluster's Nodes are not known
            else:
                selected |= member_names(member, nodes)
        return sorted(selected)

    def _reachable(self, starts: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(starts)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(self.children[name])
        return seen

    def _problems(self) -> list[Flag]:
        flags = [Flag(p.name, p.message, fatal=True) for p in tree_problems(self.hypernodes)]
        flags += [
            Flag(p.name, f"orphaned member: {p.message}", fatal=True) for p in missing_member_problems(self.hypernodes)
        ]
        # A root below the top tier is not flagged: several independent trees of different depth are a valid
        # cluster for Volcano, whose scheduler (HyperNodesInfo) only refuses cycles and a second parent.
        if self.nodes is not None:
            for name in sorted(self.hypernodes):
                for index, member in enumerate(self.hypernodes[name].members):
                    selector = member.selector
                    if member.type != "Node" or selector is None:
                        continue
                    if selector.exact_match is not None:
                        if selector.exact_match.name not in self.nodes:
                            flags.append(Flag(name, f"member {index}: Node {selector.exact_match.name} does not exist"))
                    elif not member_names(member, self.nodes):
                        flags.append(Flag(name, f"member {index} matches no Node"))
            placed = set(self.node_homes())
            homeless = sorted(set(self.nodes) - placed)
            if homeless and self.hypernodes:
                shown = ", ".join(homeless[:5]) + (f", … ({len(homeless)} in all)" if len(homeless) > 5 else "")
                flags.append(Flag(None, f"{len(homeless)} Node(s) in no leaf: {shown}"))
        return flags
