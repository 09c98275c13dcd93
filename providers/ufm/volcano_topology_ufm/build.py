"""A :class:`~volcano_topology_ufm.parse.Fabric` to a strict :class:`TreeBuilder`: every tier, rails folded.

Pure. How the tree is made:

- **Leaves** are the switches with host ports on them. A switch with hosts that is
  also cabled to two or more leaves (a spine with storage or the UFM server on it; see
  :func:`_non_leaf`), or whose name matches ``nonLeafSwitches``, is not a leaf: its hosts go
  into a leaf of their own under it, ``<switch>-hosts``.
- **Tiers above** come from the links: each switch's distance (in cables) from the
  nearest leaf; a switch's uplinks are its neighbours one step further. Links between
  switches at the same distance (leaf-to-leaf cross links) are ignored. So a fabric of
  any depth gives every tier, not just two.
- **Rails**: the leaves a host's ports reach (one per rail, in a rail-optimised fabric)
  are declared rails of one another (``TreeBuilder.rails``), which joins them into one
  tier-1 HyperNode, a scalable unit, so no node is ever in two leaves. Their uplinks are
  joined the same way (``TreeBuilder``'s redundant uplinks).
- **Names**: a switch's HyperNode is its ``system_name``, sanitised (lowercase, ``-`` for
  other characters), with ``namePrefix``; when that is empty, too long, or shared by two
  switches, a name derived from the switch's GUID. Joined HyperNodes get TreeBuilder's
  hashed names. Nothing depends on the order of UFM's answers.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from volcano_topology.sdk import naming
from volcano_topology.sdk.hostnames import MappedHosts, NodeNameMapper
from volcano_topology.sdk.tree import TreeBuilder
from volcano_topology_ufm.parse import Fabric, System, UFMDataError, _sample
from volcano_topology_ufm.settings import UFMSettings

HOSTS_SUFFIX = "-hosts"


@dataclass
class Built:
    tree: TreeBuilder
    hosts: MappedHosts
    leaves: list[str] = field(default_factory=list)  # switch names of the leaves
    non_leaf: list[str] = field(default_factory=list)  # switches with hosts that are not leaves
    ignored_links: int = 0  # links between switches at the same distance from the leaves
    hostless: list[str] = field(default_factory=list)  # leaves without host ports, left out

    @property
    def node_count(self) -> int:
        return len(self.hosts.nodes)


def switch_ids(switches: Mapping[str, System], prefix: str = "") -> dict[str, str]:
    """Switch GUID -> the name TreeBuilder gets (``prefix`` + it is the HyperNode name): stable and unique."""
    natural = {guid: naming.sanitize(s.name) for guid, s in switches.items()}
    claimed: dict[str, int] = defaultdict(int)
    for name in natural.values():
        claimed[name] += 1
    ids = {}
    for guid, name in natural.items():
        if name and claimed[name] == 1 and naming.usable(prefix + name) and not name.endswith(HOSTS_SUFFIX):
            ids[guid] = name
        else:
            ids[guid] = naming.hashed_name([guid], name or "switch", prefix).removeprefix(prefix)
    return ids


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        while self.parent.setdefault(item, item) != item:
            item = self.parent[item]
        return item

    def union(self, items: Iterable[str]) -> None:
        roots = sorted({self.find(i) for i in items})
        for root in roots[1:]:
            self.parent[root] = roots[0]


def build_tree(fabric: Fabric, settings: UFMSettings, mapper: NodeNameMapper | None = None) -> Built:
    """The tree of ``fabric``; raises :class:`UFMDataError` when it cannot be the whole fabric."""
    mapped = (mapper or settings.node_names.mapper()).map_all(fabric.hosts)
    switches = fabric.switches
    ids = switch_ids(switches, settings.name_prefix)
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in fabric.edges:
        neighbours[a].add(b)
        neighbours[b].add(a)

    on_switch: dict[str, set[str]] = defaultdict(set)  # switch GUID -> hosts (mapped or not) cabled to it
    for host, homes in fabric.attachments.items():
        for guid in homes:
            on_switch[guid].add(host)
    with_hosts = fabric.host_switches | on_switch.keys()
    non_leaf = _non_leaf(with_hosts, neighbours, fabric, settings.non_leaf_switches, switches)
    leaves = sorted(with_hosts - non_leaf)
    if not leaves:
        raise UFMDataError(
            "no leaf switch: every switch with hosts is cabled to several others with hosts "
            "(name the spines and cores with hosts in nonLeafSwitches)"
        )

    distance = _distances(leaves, neighbours)
    hostless = _hostless_leaves(distance, neighbours) - with_hosts  # never drop a switch's hosts with it
    parents: dict[str, set[str]] = defaultdict(set)
    ignored = 0
    for a, b in sorted(fabric.edges):
        da, db = distance.get(a), distance.get(b)
        if a in hostless or b in hostless:
            continue
        if da is not None and db is not None and abs(da - db) == 1:
            child, parent = (a, b) if da < db else (b, a)
            parents[child].add(parent)
        elif da is not None and da == db:
            ignored += 1
    _check_uplinks(fabric, leaves, parents, switches, settings.allow_isolated_leaves)

    tree = TreeBuilder(tier_names=settings.tier_names, name_prefix=settings.name_prefix, strict=True)
    taken = set(ids.values())
    node_homes: dict[str, list[str]] = defaultdict(list)  # node -> TreeBuilder switches it is attached to
    for guid in sorted(set(switches) - hostless):
        tree.switch(ids[guid], parents=sorted(ids[p] for p in parents[guid]))
        nodes = sorted(mapped.nodes[h] for h in on_switch.get(guid, ()) if h in mapped.nodes)
        if not nodes:
            continue
        home = ids[guid]
        if guid in non_leaf:
            home = _hosts_leaf(ids[guid], guid, settings.name_prefix, taken)
            tree.switch(home, parents=[ids[guid]])
        tree.attach(home, *nodes)
        for node in nodes:
            node_homes[node].append(home)
    for rails in node_homes.values():
        if len(rails) > 1:
            tree.rails(*sorted(rails))
    check_every_node_placed(mapped.nodes.values(), node_homes)
    return Built(
        tree,
        mapped,
        leaves=sorted(switches[g].name for g in leaves),
        non_leaf=sorted(switches[g].name for g in non_leaf),
        ignored_links=ignored,
        hostless=sorted(switches[g].name for g in hostless),
    )


def _non_leaf(
    with_hosts: set[str],
    neighbours: Mapping[str, set[str]],
    fabric: Fabric,
    patterns: Iterable[str],
    switches: Mapping[str, System],
) -> set[str]:
    """The switches with hosts that are not leaves: cabled to two or more leaves, or named in ``nonLeafSwitches``.

    Which switches with hosts are leaves is what is being decided, so: a switch named in
    ``nonLeafSwitches`` is never counted as a leaf neighbour; a switch cabled to two or more
    switches with hosts that have no other such switch (plain leaves) is not a leaf; when
    switches with hosts are cabled to each other both ways (the UFM servers of an HA pair on
    two spines, each cabled to every leaf), the one with fewer host ports per cabled switch
    is the spine: a leaf has many hosts and few uplinks, a spine few hosts and many downlinks.
    """
    compiled = [re.compile(p) for p in patterns]
    forced = {g for g in with_hosts if any(p.fullmatch(switches[g].name) for p in compiled)}
    hosted = with_hosts - forced
    near = {g: neighbours.get(g, set()) & hosted for g in hosted}
    candidates = {g for g in hosted if len(near[g]) >= 2}

    def density(guid: str) -> float:
        return fabric.host_ports.get(guid, 0) / max(1, len(neighbours.get(guid, ())))

    found = set(forced)
    for guid in candidates:
        plain = near[guid] - candidates  # leaves whatever else is decided
        denser = [other for other in near[guid] if density(other) >= density(guid)]
        if len(plain) >= 2 or len(denser) >= 2:
            found.add(guid)
    return found


def check_every_node_placed(nodes: Iterable[str], homes: Mapping[str, list[str]]) -> None:
    """Every mapped host has a leaf; one without would be deleted from the topology by this scan: refuse it."""
    if lost := sorted(set(nodes) - homes.keys()):
        raise UFMDataError(f"{len(lost)} mapped host(s) in no leaf ({_sample(lost)}): refusing the scan (a bug)")


def _distances(sources: Iterable[str], neighbours: Mapping[str, set[str]]) -> dict[str, int]:
    distance = dict.fromkeys(sources, 0)
    frontier = sorted(distance)
    while frontier:
        following = []
        for guid in frontier:
            for other in sorted(neighbours.get(guid, ())):
                if other not in distance:
                    distance[other] = distance[guid] + 1
                    following.append(other)
        frontier = following
    return distance


def _hostless_leaves(distance: Mapping[str, int], neighbours: Mapping[str, set[str]]) -> set[str]:
    """Leaves without a host port (all down, or none cabled yet), which the distances put two tiers up.

    Such a switch is at distance 2, has no uplink, and everything it is cabled to is an uplink
    of one single leaf: a core above several pods is cabled to spines no single leaf reaches.
    Left out of the tree, so it is never mistaken for a core (the idea of the ibnetdiscover provider).
    """
    found = set()
    for guid, d in distance.items():
        near = neighbours.get(guid, set())
        if d != 2 or not near or any(distance.get(n) != 1 for n in near):
            continue
        for leaf in sorted(neighbours.get(min(near), ())):
            if distance.get(leaf) == 0 and near <= neighbours[leaf]:
                found.add(guid)
                break
    return found


def _hosts_leaf(switch_id: str, guid: str, prefix: str, taken: set[str]) -> str:
    name = switch_id + HOSTS_SUFFIX
    if not naming.usable(prefix + name) or name in taken:
        name = naming.hashed_name([guid, "hosts"], name, prefix).removeprefix(prefix)
    taken.add(name)
    return name


def _check_uplinks(
    fabric: Fabric, leaves: list[str], parents: Mapping[str, set[str]], switches: Mapping[str, System], allowed: bool
) -> None:
    """Refuse leaves without uplinks in a fabric with several leaf groups, unless ``allowIsolatedLeaves``.

    A links answer that lost entries looks exactly like leaves whose cables are all down;
    only the first can be told apart by retrying, so it is refused rather than written.
    """
    if allowed:
        return
    groups = _Union()
    leaf_set = set(leaves)
    for reached in fabric.attachments.values():
        on_leaves = [g for g in reached if g in leaf_set]
        if on_leaves:
            groups.union(on_leaves)
    members: dict[str, list[str]] = defaultdict(list)
    for guid in leaves:
        members[groups.find(guid)].append(guid)
    if len(members) < 2:
        return
    if not fabric.edges:
        raise UFMDataError(
            f"partial answer: links has no switch-to-switch link, but there are {len(members)} separate leaf "
            "groups (set allowIsolatedLeaves if that is the real fabric)"
        )
    isolated = [group for group in members.values() if not any(parents.get(g) for g in group)]
    if isolated:
        names = _sample(sorted("+".join(sorted(switches[g].name for g in group)) for group in isolated))
        raise UFMDataError(
            f"partial answer: {len(isolated)} leaf switch(es) have no uplink in links ({names}); "
            "set allowIsolatedLeaves if they really are cut off"
        )


def check_host_drop(previous: int | None, current: int, max_fraction: float) -> None:
    """Refuse a scan with many fewer hosts than the last good one (a UFM restart answers a half-known fabric)."""
    if previous is None or previous == 0 or max_fraction >= 1.0:
        return
    dropped = (previous - current) / previous
    if dropped > max_fraction:
        raise UFMDataError(
            f"partial answer: {current} hosts, {previous} in the last good scan (a drop of {dropped:.0%}, more than "
            f"maxHostDropFraction {max_fraction:g}); keeping the last good topology. If the fabric really is that much "
            "smaller, restart the provider (its next first scan has nothing to compare with) or raise "
            "maxHostDropFraction"
        )
