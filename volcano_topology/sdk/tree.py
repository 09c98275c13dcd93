"""Build HyperNodes from switches and the nodes under them.

Declare what the fabric looks like; get a strict tree Volcano can schedule on::

    tree = TreeBuilder(tier_names={1: "leaf", 2: "spine"})
    tree.switch("spine-1")
    tree.switch("leaf-1", parents=["spine-1"]).attach("leaf-1", "gpu001", "gpu002")
    hypernodes = tree.build()

(``switch``, ``link``, ``attach`` and ``rails`` return the builder, so calls chain.)

Real fabrics are not trees, so the builder folds them into one:

- **rails**: a node attached to several leaves (one per rail, declared with
  :meth:`TreeBuilder.rails`) joins those leaves into a single tier-1 HyperNode, so every
  node sits in exactly one leaf;
- **redundant uplinks**: a switch with several parents joins those parents into one
  HyperNode at their tier, so every HyperNode has exactly one parent;
- a switch whose subtree holds no node is left out.

Tiers are heights: 1 for switches with nodes, otherwise one more than the highest child
(an explicit ``tier`` must still be above its children). Names come from
:mod:`volcano_topology.sdk.naming`. Problems (unknown parents, cycles, invalid node
names, a switch with both nodes and child switches) name the switch or node and are
raised together as :class:`TreeError`.

**Strict mode** (the default, ``TreeBuilder(strict=True)``) refuses input that would need
repairing, with one problem per offending node group or switch in the :class:`TreeError`:

- nodes attached to several switches that were not declared rails of one another with
  :meth:`TreeBuilder.rails` (a node listed under two racks is a data error, not rails);
- a switch whose name is not usable as a HyperNode name as given: it is not equal to
  :func:`~volcano_topology.sdk.naming.sanitize` of itself, or, with ``name_prefix``, is
  longer than :data:`~volcano_topology.sdk.naming.MAX_NAME` or otherwise not usable.

**Lenient mode** (``TreeBuilder(strict=False)``) builds such input anyway, as earlier
versions did: leaves sharing a node are joined, names are sanitised or hashed. Each repair
is appended to :attr:`TreeBuilder.repairs` (reset by every ``build()``) and logged as a
warning on the ``volcano_topology.sdk.tree`` logger.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from volcano_topology import kubenames
from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.sdk import naming

log = logging.getLogger(__name__)


class TreeError(ValueError):
    """The input cannot be built into a tree; ``problems`` holds one message per switch or node concerned."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class _Switch:
    name: str
    parents: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    tier: int | None = None
    tier_name: str | None = None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # deterministic representative

    def groups(self, items: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for item in sorted(items):
            out[self.find(item)].append(item)
        return out


@dataclass
class _Group:
    switches: list[str]
    level: int
    nodes: set[str] = field(default_factory=set)
    children: list[str] = field(default_factory=list)  # group keys
    parent: str | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.switches[0] if len(self.switches) == 1 else "+".join(self.switches)


class TreeBuilder:
    """Switches, uplinks and attached nodes in; HyperNodes of a strict tree out (see the module docstring).

    ``tier_names`` maps a tier to its ``tierName`` (it wins over a switch's own ``tier_name``);
    ``name_prefix`` is put before every HyperNode name; ``strict`` (default True) refuses input
    that needs repairing, ``strict=False`` repairs it and lists each repair in ``repairs``.
    """

    def __init__(
        self, *, tier_names: Mapping[int, str] | None = None, name_prefix: str = "", strict: bool = True
    ) -> None:
        self.tier_names = dict(tier_names or {})
        self.name_prefix = name_prefix
        self.strict = strict
        self.repairs: list[str] = []  # what the last build() of a lenient builder repaired
        self._switches: dict[str, _Switch] = {}
        self._rails = _UnionFind()

    def switch(
        self,
        name: str,
        *,
        parents: Iterable[str] = (),
        tier: int | None = None,
        tier_name: str | None = None,
    ) -> TreeBuilder:
        """Declare a switch (again: adds parents, keeps what was declared before)."""
        found = self._switches.setdefault(name, _Switch(name))
        found.parents.update(parents)
        found.tier = tier if tier is not None else found.tier
        found.tier_name = tier_name or found.tier_name
        return self

    def link(self, child: str, parent: str) -> TreeBuilder:
        """``parent`` is an uplink of ``child``; declares either switch that was not declared yet."""
        self.switch(child, parents=[parent])
        self._switches.setdefault(parent, _Switch(parent))
        return self

    def attach(self, switch: str, *nodes: str) -> TreeBuilder:
        """Nodes cabled to ``switch`` (declared here if it was not).

        A node may be attached to several switches only if they are rails of one another
        (:meth:`rails`); a strict builder refuses it otherwise.
        """
        self._switches.setdefault(switch, _Switch(switch)).nodes.update(nodes)
        return self

    def rails(self, *switches: str) -> TreeBuilder:
        """Declare ``switches`` rails of one another: the same nodes are cabled to each, one rail per switch.

        Nodes attached to several declared rails join those switches into one tier-1 HyperNode
        (and their uplinks into one parent), exactly as a lenient builder does. Declarations
        add up: ``rails(a, b)`` and ``rails(b, c)`` make a, b and c rails of one another.
        Switches not declared yet are declared without parents.
        """
        for switch in switches:
            self._switches.setdefault(switch, _Switch(switch))
            self._rails.union(switches[0], switch)
        return self

    # -- building --------------------------------------------------------------------

    def build(self) -> list[HyperNode]:
        """The HyperNodes, lowest tier first, then by name; raises :class:`TreeError` listing every problem."""
        self.repairs = []
        problems = self._problems()
        if problems:
            raise TreeError(problems)
        levels = self._levels()
        live = {name for name, level in levels.items() if level > 0}
        if self.strict and (problems := self._undeclared_rails() + self._unusable_names(live)):
            raise TreeError(problems)
        self._repaired(self._undeclared_rails())
        groups = self._group(levels, live)
        problems = self._tier_problems(groups)
        if problems:
            raise TreeError(problems)
        self._name(groups)
        self._repaired(self._renamed(groups))
        built = {g.name: (g.level, self._hypernode(g, groups)) for g in groups.values()}
        return [hypernode for _, hypernode in sorted(built.values(), key=lambda item: (item[0], item[1].name))]

    def _problems(self) -> list[str]:
        problems = []
        for name in sorted(self._switches):
            switch = self._switches[name]
            for parent in sorted(switch.parents - set(self._switches)):
                problems.append(f"switch {name}: parent {parent} is not declared")
            if switch.nodes and any(name in s.parents for s in self._switches.values()):
                problems.append(f"switch {name}: has both nodes and child switches")
            for node in sorted(switch.nodes):
                if found := kubenames.dns1123_subdomain_problems(node) or kubenames.qualified_name_problems(node):
                    problems.append(f"node {node!r} under switch {name}: not a valid node name: {found[0]}")
            if name in switch.parents:
                problems.append(f"switch {name}: is its own parent")
        problems.extend(self._cycles())
        return problems

    def _undeclared_rails(self) -> list[str]:
        """One message per set of switches sharing nodes without being declared rails of one another."""
        homes: dict[str, list[str]] = defaultdict(list)
        for name in sorted(self._switches):
            for node in self._switches[name].nodes:
                homes[node].append(name)
        shared: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for node, switches in homes.items():
            if len({self._rails.find(s) for s in switches}) > 1:
                shared[tuple(switches)].append(node)
        messages = []
        for homes_of, nodes in sorted(shared.items()):
            what = "node " + repr(nodes[0]) if len(nodes) == 1 else f"nodes {', '.join(map(repr, sorted(nodes)))}"
            done = (
                " (declare them with TreeBuilder.rails(), or fix the input)" if self.strict else self._joined(homes_of)
            )
            messages.append(
                f"{what}: attached to switches {', '.join(homes_of)}, which are not declared rails of one another{done}"
            )
        return messages

    def _joined(self, switches: Iterable[str]) -> str:
        uplinks = {frozenset(self._switches[s].parents) for s in switches}
        joined = "; joined those switches into one HyperNode"
        return joined + (", and their uplinks into one" if len(uplinks) > 1 else "")

    def _unusable_names(self, live: set[str]) -> list[str]:
        """One message per switch with nodes below it whose name is not usable as a HyperNode name as given."""
        messages = []
        for name in sorted(live):
            if why := self._name_problem(name):
                messages.append(f"switch {name!r}: {why}")
        return messages

    def _name_problem(self, name: str) -> str | None:
        cleaned = naming.sanitize(name)
        full = self.name_prefix + name
        if cleaned == name and naming.usable(full):
            return None
        if cleaned != name:
            return (
                f"not a valid HyperNode name (it would be rewritten to {self.name_prefix + cleaned!r}): names are "
                "lowercase letters, digits, '-' and '.', start and end alphanumeric, and have no '--'"
            )
        return f"the HyperNode name {full!r} is not valid: longer than {naming.MAX_NAME} characters"

    def _repaired(self, repairs: list[str]) -> None:
        for repair in repairs:
            log.warning("TreeBuilder(strict=False) repaired its input: %s", repair)
        self.repairs.extend(repairs)

    def _cycles(self) -> list[str]:
        state: dict[str, int] = {}  # 1 visiting, 2 done
        found: list[str] = []

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 2 or name not in self._switches:
                return
            if state.get(name) == 1:
                cycle = [*trail[trail.index(name) :], name]
                found.append(f"switch {name}: uplinks form a cycle: {' -> '.join(cycle)}")
                return
            state[name] = 1
            for parent in sorted(self._switches[name].parents):
                visit(parent, [*trail, name])
            state[name] = 2

        for name in sorted(self._switches):
            visit(name, [])
        return found

    def _levels(self) -> dict[str, int]:
        """Height of each switch; 0 when no node sits anywhere below it."""
        children: dict[str, list[str]] = defaultdict(list)
        for switch in self._switches.values():
            for parent in switch.parents:
                children[parent].append(switch.name)
        levels: dict[str, int] = {}

        def height(name: str) -> int:
            if name not in levels:
                switch = self._switches[name]
                below = [height(c) for c in children[name]]
                natural = 1 if switch.nodes else (1 + max(below) if below and max(below) > 0 else 0)
                levels[name] = (switch.tier or natural) if natural else 0  # an explicit tier is checked later
            return levels[name]

        for name in self._switches:
            height(name)
        return levels

    def _group(self, levels: Mapping[str, int], live: set[str]) -> dict[str, _Group]:
        joined = _UnionFind()
        # Rails: leaves that share a node are one leaf HyperNode.
        homes: dict[str, list[str]] = defaultdict(list)
        for name in sorted(live):
            for node in self._switches[name].nodes:
                homes[node].append(name)
        for leaves in homes.values():
            for other in leaves[1:]:
                joined.union(leaves[0], other)
        # Redundant uplinks, bottom-up: the lowest-level parents of one group are one HyperNode.
        for level in sorted({levels[n] for n in live}):
            members = joined.groups(n for n in live if levels[n] == level)
            for switches in members.values():
                uplinks = {p for s in switches for p in self._switches[s].parents if p in live}
                lowest = min((levels[p] for p in uplinks), default=None)
                nearest = sorted(p for p in uplinks if levels[p] == lowest)
                for other in nearest[1:]:
                    joined.union(nearest[0], other)

        groups = {key: _Group(switches, levels[switches[0]]) for key, switches in joined.groups(live).items()}
        for key, group in groups.items():
            group.nodes = {node for s in group.switches for node in self._switches[s].nodes}
            uplinks = {p for s in group.switches for p in self._switches[s].parents if p in live}
            if uplinks:
                lowest = min(levels[p] for p in uplinks)
                group.parent = joined.find(min(p for p in uplinks if levels[p] == lowest))
                groups[group.parent].children.append(key)
        return groups

    def _tier_problems(self, groups: Mapping[str, _Group]) -> list[str]:
        problems = []
        for group in groups.values():
            if group.parent is not None and groups[group.parent].level <= group.level:
                parent = groups[group.parent]
                problems.append(
                    f"switch {parent.label}: tier {parent.level} is not above the tier {group.level} of {group.label}"
                )
        return sorted(problems)

    def _name(self, groups: Mapping[str, _Group]) -> None:
        paths: dict[str, list[str]] = {}

        def path(key: str) -> list[str]:
            if key not in paths:
                group = groups[key]
                paths[key] = ([*path(group.parent)] if group.parent else []) + [group.label]
            return paths[key]

        natural = {
            key: self.name_prefix + naming.sanitize(g.label) if len(g.switches) == 1 else ""
            for key, g in groups.items()
        }
        taken = defaultdict(list)
        for key, name in natural.items():
            taken[name].append(key)
        for key, group in groups.items():
            name = natural[key]
            if naming.usable(name) and len(taken[name]) == 1:
                group.name = name
            else:
                stem = group.switches[0] if len(group.switches) == 1 else f"{group.switches[0]}-x{len(group.switches)}"
                group.name = naming.hashed_name(path(key), stem, self.name_prefix)

    def _renamed(self, groups: Mapping[str, _Group]) -> list[str]:
        """A lenient build's name repairs: each switch of its own whose HyperNode is not named ``prefix + switch``."""
        messages = []
        for group in sorted(groups.values(), key=lambda g: g.label):
            if len(group.switches) == 1 and group.name != self.name_prefix + group.label:
                if naming.sanitize(group.label) != group.label:
                    why = "not a valid HyperNode name"
                elif not naming.usable(self.name_prefix + group.label):
                    why = f"longer than {naming.MAX_NAME} characters with the prefix"
                else:
                    why = "another switch's name sanitises to the same"
                messages.append(f"switch {group.label!r}: renamed to {group.name} ({why})")
        return messages

    def _hypernode(self, group: _Group, groups: Mapping[str, _Group]) -> HyperNode:
        if group.nodes:
            members = [Member.node(n) for n in sorted(group.nodes)]
        else:
            members = [Member.hypernode(n) for n in sorted(groups[c].name for c in group.children)]
        declared = {self._switches[s].tier_name for s in group.switches} - {None}
        tier_name = self.tier_names.get(group.level) or (declared.pop() if len(declared) == 1 else None)
        return HyperNode(
            metadata=ObjectMeta(name=group.name),
            spec=HyperNodeSpec(tier=group.level, tier_name=tier_name, members=members),
        )
