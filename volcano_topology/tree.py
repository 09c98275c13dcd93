"""The scheduler's assumptions about a set of HyperNodes, and tree order for writing them.

Volcano stops scheduling every topology-constrained job when these break, so a
provider's whole set is checked before anything of it is written (``tree_problems``):

- HyperNode members are referenced with ``exactMatch`` only;
- each HyperNode has at most one parent;
- there are no cycles;
- a parent's tier is greater than each child's;
- a node (by exact name) sits in at most one HyperNode, and only at the lowest tier
  used for nodes in the set.

``moment_problems`` checks the rules that must also hold at every moment while a plan
is being written, one write at a time (see :mod:`volcano_topology.plan`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from volcano_topology.api import HyperNode
from volcano_topology.problems import Problem, join_path


def children_of(hypernode: HyperNode) -> list[str]:
    """Names of HyperNode members referenced by exact name."""
    return [
        member.selector.exact_match.name
        for member in hypernode.members
        if member.type == "HyperNode" and member.selector is not None and member.selector.exact_match is not None
    ]


def tree_problems(hypernodes: Mapping[str, HyperNode]) -> list[Problem]:
    problems: list[Problem] = []
    parents: dict[str, list[str]] = defaultdict(list)
    node_homes: dict[str, list[str]] = defaultdict(list)
    for name in sorted(hypernodes):
        hypernode = hypernodes[name]
        for index, member in enumerate(hypernode.members):
            exact = member.selector.exact_match if member.selector is not None else None
            if member.type == "HyperNode":
                if exact is None:
                    path = join_path("spec", "members", index, "selector")
                    problems.append(
                        _problem(name, path, "exactMatch for HyperNode members",
                                 "a HyperNode member must be referenced with exactMatch, not regexMatch or labelMatch")
                    )  # fmt: skip
                    continue
                parents[exact.name].append(name)
                member_hn = hypernodes.get(exact.name)
                child_spec = member_hn.spec if member_hn is not None else None
                if child_spec is not None and hypernode.spec is not None and hypernode.spec.tier <= child_spec.tier:
                    problems.append(
                        _problem(name, join_path("spec", "tier"), "parent tier above children",
                                 f"tier {hypernode.spec.tier} is not greater than the tier "
                                 f"{child_spec.tier} of member HyperNode {exact.name}")
                    )  # fmt: skip
            elif exact is not None:
                node_homes[exact.name].append(name)

    for child, its_parents in sorted(parents.items()):
        if len(its_parents) > 1:
            problems.append(
                _problem(its_parents[1], "spec.members", "one parent",
                         f"HyperNode {child} already has parent {its_parents[0]}; "
                         f"it is also a member of {', '.join(its_parents[1:])}")
            )  # fmt: skip
    problems.extend(_cycle_problems(hypernodes))
    problems.extend(_node_placement_problems(hypernodes, node_homes))
    return problems


def missing_member_problems(hypernodes: Mapping[str, HyperNode], existing: Collection[str] = ()) -> list[Problem]:
    """HyperNode members that name nothing: neither in ``hypernodes`` nor in ``existing`` (others' objects)."""
    problems = []
    for name in sorted(hypernodes):
        for index, member in enumerate(hypernodes[name].members):
            exact = member.selector.exact_match if member.selector is not None else None
            if member.type != "HyperNode" or exact is None:
                continue
            child = exact.name
            if child not in hypernodes and child not in existing:
                problems.append(
                    _problem(name, join_path("spec", "members", index, "selector", "exactMatch", "name"),
                             "member exists", f"member HyperNode {child} does not exist")
                )  # fmt: skip
    return problems


def moment_problems(state: Mapping[str, HyperNode], *, existing: Collection[str] = ()) -> list[str]:
    """What breaks the scheduler's view of ``state`` (one provider's HyperNodes at one moment).

    The rules every intermediate state of a plan keeps, when the states before and after it keep them:

    (a) no node (a ``Node`` member by ``exactMatch`` name) is a member of two HyperNodes;
    (b) no HyperNode is a member (``HyperNode`` member by ``exactMatch``) of two HyperNodes;
    (c) every ``HyperNode`` member names a HyperNode that exists: one in ``state``, or in ``existing``
        (names outside this provider's set known to exist);
    (d) a parent's tier is greater than each child's in ``state`` (so there are no cycles).

    Members selected by ``regexMatch`` or ``labelMatch`` are not checked. Empty list: all hold.
    Pure and linear in the number of members, so it can run after every single write.
    """
    problems: list[str] = []
    node_homes: dict[str, list[str]] = defaultdict(list)
    parents: dict[str, list[str]] = defaultdict(list)
    for name in sorted(state):
        hypernode = state[name]
        tier = hypernode.spec.tier if hypernode.spec is not None else None
        for member in hypernode.members:
            exact = member.selector.exact_match if member.selector is not None else None
            if exact is None:
                continue
            if member.type == "Node":
                node_homes[exact.name].append(name)
                continue
            parents[exact.name].append(name)
            child = state.get(exact.name)
            if child is None:
                if exact.name not in existing:
                    problems.append(f"{name} has member HyperNode {exact.name}, which does not exist")
                continue
            child_tier = child.spec.tier if child.spec is not None else None
            if tier is not None and child_tier is not None and tier <= child_tier:
                problems.append(f"{name} (tier {tier}) is not above its member {exact.name} (tier {child_tier})")
    problems.extend(
        f"node {node} is a member of {len(homes)} HyperNodes: {', '.join(homes)}"
        for node, homes in sorted((n, h) for n, h in node_homes.items() if len(h) > 1)
    )
    problems.extend(
        f"HyperNode {child} is a member of {len(its)} HyperNodes: {', '.join(its)}"
        for child, its in sorted(parents.items())
        if len(its) > 1
    )
    return problems


def _node_placement_problems(hypernodes: Mapping[str, HyperNode], homes: Mapping[str, list[str]]) -> list[Problem]:
    problems = []
    # Sorted after filtering: 65,536 nodes in one leaf each make the sort, not the check, the cost.
    for node, its_homes in sorted((n, h) for n, h in homes.items() if len(h) > 1):
        if len(its_homes) > 1:
            problems.append(
                _problem(its_homes[1], "spec.members", "node in one leaf",
                         f"node {node} is already a member of HyperNode {its_homes[0]}; "
                         f"it is also listed in {', '.join(its_homes[1:])}")
            )  # fmt: skip
    leaf_tiers: dict[int, str] = {}
    for home in sorted({home for its_homes in homes.values() for home in its_homes}):
        spec = hypernodes[home].spec
        if spec is not None:
            leaf_tiers.setdefault(spec.tier, home)
    if len(leaf_tiers) > 1:
        lowest = min(leaf_tiers)
        for tier, example in sorted(leaf_tiers.items()):
            if tier != lowest:
                problems.append(
                    _problem(example, "spec.tier", "nodes at the lowest tier",
                             f"has node members at tier {tier}, but nodes sit at tier {lowest} elsewhere "
                             f"(e.g. in {leaf_tiers[lowest]})")
                )  # fmt: skip
    return problems


def _cycle_problems(hypernodes: Mapping[str, HyperNode]) -> list[Problem]:
    visiting, done = set(), set()
    problems = []

    def visit(name: str, trail: list[str]) -> None:
        if name in done or name not in hypernodes:
            return
        if name in visiting:
            cycle = [*trail[trail.index(name) :], name]
            problems.append(_problem(name, "spec.members", "no cycles", f"cycle: {' -> '.join(cycle)}"))
            return
        visiting.add(name)
        for child in children_of(hypernodes[name]):
            visit(child, [*trail, name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(hypernodes):
        visit(name, [])
    return problems


def levels(hypernodes: Mapping[str, HyperNode], names: Iterable[str] | None = None) -> dict[str, int]:
    """Height in the tree: 0 for HyperNodes without HyperNode members in the set, parent = 1 + max(child).

    Cycles (already reported by ``tree_problems``) are cut rather than followed.
    """
    height: dict[str, int] = {}

    def measure(name: str, seen: frozenset[str]) -> int:
        if name in height:
            return height[name]
        children = [c for c in children_of(hypernodes[name]) if c in hypernodes and c not in seen]
        value = 1 + max((measure(c, seen | {c}) for c in children), default=-1)
        height[name] = value
        return value

    for name in sorted(names if names is not None else hypernodes):
        measure(name, frozenset({name}))
    return height


def _problem(name: str, path: str, rule: str, message: str) -> Problem:
    return Problem(path=path, rule=rule, message=message, level="topology", name=name)
