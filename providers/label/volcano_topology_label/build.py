"""Node labels in, HyperNodes of a strict tree out: pure, no I/O (the provider loop is in ``provider.py``).

Each HyperNode stands for a label PATH: its type and the tier-label values from the top tier
down to its own. A node of type ``t`` whose labels read ``spine=s1, leaf=l1`` is a member of
the HyperNode of path ``(t, s1, l1)``, a child of ``(t, s1)``. Because identity is the path,
the same value under two parents is two HyperNodes (Volcano keys HyperNodes by value and so
gives such a HyperNode two parents, which stops its scheduler), and every HyperNode has at
most one parent by construction.

Names (see :func:`_names`): ``<type>-<value>`` when no other HyperNode of the set would get the
same name, otherwise ``<type>-<value>-<hash of the path>``. A name so depends only on its own
path and on the paths whose readable name is the same, so nodes that come and go elsewhere
never rename a HyperNode.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from volcano_topology import kubenames
from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.sdk import naming
from volcano_topology_label.settings import LabelSettings

# A path ends with this (a label value is never empty here: an empty value counts as missing)
# for the leaf that holds the nodes of a parent whose lower labels are missing (attachAbove).
UNLABELLED = ""
UNLABELLED_SUFFIX = "unlabelled"
MAX_TIER_NAME = 253  # the CRD's limit on tierName; a longer label key gives no tierName
PROFILE_LABEL = "volcano.sh/network-topology-profile"  # on HyperNodes of profile-form types, as Volcano

Path = tuple[str, ...]  # (type, value of the top tier, ..., value of this tier)


@dataclass(frozen=True)
class Built:
    """What :func:`analyse` made of the nodes: the HyperNodes and the nodes it had to treat specially."""

    hypernodes: list[HyperNode]
    # Nodes lacking at least one tier label of the type they were given (placed or skipped, by policy).
    missing_level: frozenset[str] = frozenset()
    # Nodes with tier labels that joined no HyperNode (missing levels under `skip`, or no top level).
    skipped: frozenset[str] = frozenset()
    # Nodes carrying labels of more than one type (each joins exactly one: see choose_type).
    several_types: frozenset[str] = frozenset()
    # Nodes with no tier label of any type: not part of any topology.
    outside: frozenset[str] = frozenset()
    # Nodes whose name cannot be a HyperNode member (Volcano admits qualified names only).
    invalid_names: frozenset[str] = frozenset()
    # Node -> the type it was placed under.
    placed: Mapping[str, str] = field(default_factory=dict)
    # Label path -> the name of its HyperNode.
    names: Mapping[Path, str] = field(default_factory=dict)

    def gauges(self) -> dict[str, float]:
        return {
            "nodes_missing_level": float(len(self.missing_level)),
            "nodes_skipped": float(len(self.skipped)),
            "nodes_in_several_types": float(len(self.several_types)),
            "nodes_outside_topology": float(len(self.outside)),
            "nodes_invalid_name": float(len(self.invalid_names)),
            "nodes_placed": float(len(self.placed)),
            "hypernodes": float(len(self.hypernodes)),
        }


def build(nodes: Mapping[str, Mapping[str, str]], settings: LabelSettings) -> list[HyperNode]:
    """The HyperNodes for these nodes (name -> labels): lowest tier first, then by name."""
    return analyse(nodes, settings).hypernodes


def level_values(labels: Mapping[str, str], tiers: Sequence[str]) -> list[str | None]:
    """The node's value for each tier label, top first; None where the label is absent or empty."""
    return [labels.get(key) or None for key in tiers]


def matching_types(labels: Mapping[str, str], settings: LabelSettings) -> tuple[list[str], bool]:
    """The types a node may belong to, and whether a profile's ``nodeSelector`` chose them.

    As in Volcano: a node selected by a profile's ``nodeSelector`` belongs to that profile
    (whatever tier labels it carries); otherwise to a type without a selector of which it
    carries at least one tier label.
    """
    selected = [t for t in settings.network_topology_types if (s := settings.selector(t)) and s.matches(labels)]
    if selected:
        return selected, True
    open_types = [t for t in settings.network_topology_types if settings.selector(t) is None]
    return [t for t in open_types if any(level_values(labels, settings.tiers(t)))], False


def choose_type(labels: Mapping[str, str], settings: LabelSettings, types: Sequence[str]) -> str:
    """The one of ``types`` (not empty) a node joins, so it sits in exactly one leaf.

    First a type whose tier labels it all has, the deepest such type; otherwise the type of
    which it has the most tier labels; ties go to the type whose name sorts first. (So in a
    cluster of two generations whose types share label keys, a node of the deeper generation
    joins the deeper type, and a node of the other generation the type that fits it whole.)
    """
    ranks = []
    for type_name in types:
        values = level_values(labels, settings.tiers(type_name))
        present = sum(v is not None for v in values)
        ranks.append((present < len(values), -present, type_name))
    return min(ranks)[2]


def analyse(nodes: Mapping[str, Mapping[str, str]], settings: LabelSettings) -> Built:
    """Place every node, then name and build the HyperNodes of every path in use (see the module docstring)."""
    leaves: dict[Path, set[str]] = defaultdict(set)
    missing, skipped, several, outside, invalid = set(), set(), set(), set(), set()
    placed: dict[str, str] = {}
    for node in sorted(nodes):
        labels = nodes[node]
        matching, selected = matching_types(labels, settings)
        if not matching:
            outside.add(node)
            continue
        if len(matching) > 1:
            several.add(node)
        if kubenames.dns1123_subdomain_problems(node) or kubenames.qualified_name_problems(node):
            invalid.add(node)
            continue
        if selected and len(matching) > 1:
            # Selected by two profiles: which one is a configuration error (Volcano refuses it);
            # leaving the node out keeps the tree strict and the rest of the topology in place.
            skipped.add(node)
            continue
        type_name = choose_type(labels, settings, matching)
        values = level_values(labels, settings.tiers(type_name))
        if None in values:
            missing.add(node)
            top = values[: values.index(None)]  # labels below the first missing one cannot be placed
            if settings.missing_labels == "skip" or not top:
                skipped.add(node)
                continue
            path: Path = (type_name, *[v for v in top if v is not None], UNLABELLED)
        else:
            path = (type_name, *[v for v in values if v is not None])
        leaves[path].add(node)
        placed[node] = type_name

    paths = _all_paths(leaves)
    names = _names(paths)
    hypernodes = [_hypernode(path, paths, names, leaves, settings) for path in paths]
    hypernodes.sort(key=lambda h: (h.spec.tier if h.spec else 0, h.name))
    return Built(
        hypernodes,
        frozenset(missing),
        frozenset(skipped),
        frozenset(several),
        frozenset(outside),
        frozenset(invalid),
        placed,
        names,
    )


def _all_paths(leaves: Mapping[Path, set[str]]) -> dict[Path, set[Path]]:
    """Every path in use (leaves and all their ancestors below the type) -> its child paths."""
    children: dict[Path, set[Path]] = {}
    for leaf in leaves:
        children.setdefault(leaf, set())
        for depth in range(len(leaf) - 1, 1, -1):  # (type, v1) is the shortest path with a HyperNode
            children.setdefault(leaf[:depth], set()).add(leaf[: depth + 1])
    return children


def _tier(path: Path, settings: LabelSettings) -> int:
    """Tiers count from the bottom as in Volcano: the lowest tier label is tier 1, so every leaf is tier 1."""
    if path[-1] == UNLABELLED and len(path) > 2:
        return 1
    return len(settings.tiers(path[0])) - (len(path) - 1) + 1


def _readable(path: Path) -> str:
    prefix = naming.sanitize(path[0])
    if path[-1] == UNLABELLED:
        return f"{prefix}-{naming.sanitize(path[-2])}-{UNLABELLED_SUFFIX}"
    return f"{prefix}-{naming.sanitize(path[-1])}"


def _hashed(path: Path) -> str:
    stem = f"{path[-2]}-{UNLABELLED_SUFFIX}" if path[-1] == UNLABELLED else path[-1]
    return naming.hashed_name(path, stem, naming.sanitize(path[0]) + "-")


def _names(paths: Mapping[Path, object]) -> dict[Path, str]:
    """Readable names where no other path of the set claims the same one; hashed names (of the path) elsewhere.

    A readable name that is not usable (too long, or its value sanitises to nothing) is hashed
    too. Should a readable name equal another path's hashed name, the readable one is hashed as
    well, so names are always unique (two equal hashes of different paths would need a SHA-256
    prefix collision, and raise).
    """
    readable = {path: _readable(path) for path in paths}
    claims: dict[str, int] = defaultdict(int)
    for name in readable.values():
        claims[name] += 1
    names = {
        path: name if claims[name] == 1 and naming.usable(name) else _hashed(path) for path, name in readable.items()
    }
    while True:
        hashed = {name for path, name in names.items() if name != readable[path]}
        clashing = [path for path, name in names.items() if name == readable[path] and name in hashed]
        if not clashing:
            break
        for path in clashing:
            names[path] = _hashed(path)
    if len(set(names.values())) != len(names):
        raise ValueError("two label paths hash to the same HyperNode name")
    return names


def _hypernode(
    path: Path,
    paths: Mapping[Path, set[Path]],
    names: Mapping[Path, str],
    leaves: Mapping[Path, set[str]],
    settings: LabelSettings,
) -> HyperNode:
    if path in leaves:
        members = [Member.node(node) for node in sorted(leaves[path])]
    else:
        members = [Member.hypernode(name) for name in sorted(names[child] for child in paths[path])]
    labels: dict[str, str] | None = None
    tier_name: str | None = None
    if path[-1] != UNLABELLED:
        depth = len(path) - 2
        key = settings.tiers(path[0])[depth]
        # As Volcano's label source does: the tier's label on the HyperNode, and the tier's tierName
        # (the label key unless the profile names it). A value read from a --nodes file may not
        # be a valid label value; a Node's always is.
        labels = {key: path[-1]} if not kubenames.label_value_problems(path[-1]) else {}
        tier_name = settings.tier_names(path[0])[depth]
        tier_name = tier_name if len(tier_name) <= MAX_TIER_NAME else None
    if settings.is_profile(path[0]):
        labels = {**(labels or {}), PROFILE_LABEL: naming.sanitize(path[0])}
    return HyperNode(
        metadata=ObjectMeta(name=names[path], labels=labels or None),
        spec=HyperNodeSpec(tier=_tier(path, settings), tier_name=tier_name, members=members),
    )
