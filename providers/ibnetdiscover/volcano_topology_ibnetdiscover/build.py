"""A parsed :class:`~volcano_topology_ibnetdiscover.parse.Fabric` -> a strict tree (a ``TreeBuilder``): pure.

Tiers come from the cabling, never from switch names:

1. **Leaves** are the switches with at least one HCA (``Ca``) cabled to them (not counting HCAs that
   are no hosts, such as the SHARP aggregation node inside every switch).
2. Every other switch gets its distance from the nearest leaf (breadth-first over switch-to-switch
   cables). A cable from distance ``d`` to ``d + 1`` is an uplink; cables between switches at the
   same distance (peer links) carry no hierarchy and are ignored. A switch's tier is ``d + 1``.
3. A switch with no HCA at distance 2 whose every neighbour is one of the uplinks of a single leaf
   is a *leaf without hosts* (cabled exactly like a leaf whose hosts are down or absent): it is
   left out. It would otherwise look like a spine above that one leaf's uplinks, a HyperNode
   holding the same nodes as the one below it, adding nothing. Switches that reach no leaf are
   left out too.
4. The SDK's :class:`~volcano_topology.sdk.tree.TreeBuilder` folds the graph into a strict tree:
   a switch's uplinks at one tier are one HyperNode (a director's line cards and a pod's leaves'
   uplinks join into one pod; its spine cards into one core), and a host whose HCAs sit on several
   leaves makes those leaves rails of one another (declared with ``TreeBuilder.rails()``), so they
   become one leaf HyperNode and no node is ever in two leaves.

Hosts are named by the first word of their HCA's node description (``"SAT111092710053 ibp11s0f0"``
-> ``SAT111092710053``) and mapped to Kubernetes node names with the shared
:class:`~volcano_topology.sdk.hostnames.NodeNameMapping`. An HCA whose description is a firmware
default (``"MT4123 ConnectX6   Mellanox Technologies"``) names no host: it is reported, never guessed.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from volcano_topology.sdk import naming
from volcano_topology.sdk.hostnames import MappedHosts, NodeNameMapping
from volcano_topology.sdk.tree import TreeBuilder
from volcano_topology_ibnetdiscover.parse import Fabric, Node

# Node descriptions that name nothing: empty, the HCA firmware's default, an unmanaged switch's default.
DEFAULT_UNNAMED = ("", r"MT\d+\s.*", r"(?i).*\bmellanox technologies")
# HCAs that are no hosts: SHARP aggregation nodes sit inside switches, one on every switch, and would make
# every switch look like a leaf.
DEFAULT_IGNORED = (r"(?i).*\baggregation node\b.*",)
DEFAULT_TIER_NAMES: Mapping[int, str] = {1: "leaf", 2: "spine", 3: "core"}

# "MF0;<name>:<model>/<slot>/<unit>": Mellanox switches' NodeDescription.
_SWITCH_DESCRIPTION = re.compile(r"(?:MF\d+;)?([^:]*)(?::([^/]*)((?:/[^/]*)*))?")


@dataclass(frozen=True)
class BuildOptions:
    name_prefix: str = ""
    tier_names: Mapping[int, str] = field(default_factory=lambda: dict(DEFAULT_TIER_NAMES))
    unnamed: tuple[str, ...] = DEFAULT_UNNAMED  # regexes (fullmatch) of descriptions that name nothing
    ignored: tuple[str, ...] = DEFAULT_IGNORED  # regexes (fullmatch) of HCA descriptions that are no hosts


@dataclass(frozen=True)
class UnnamedHca:
    """An HCA port whose node description names no host: where it is cabled, so someone can name it."""

    guid: str
    description: str
    switch: str  # the leaf's switch name
    port: int  # the leaf's port


@dataclass
class Layout:
    """The tree to build and everything learnt on the way (for reports, logs and gauges)."""

    tree: TreeBuilder
    distance: dict[str, int]  # switch GUID -> distance from the nearest leaf (reached switches only)
    names: dict[str, str]  # switch GUID -> its switch name (HyperNode name before any prefix)
    leaves: list[str]  # GUIDs of switches with HCAs
    hostless_leaves: list[str]  # GUIDs left out: cabled like a leaf, no HCA
    unreached: list[str]  # GUIDs left out: no path to any leaf
    homes: dict[str, list[str]]  # host name (as in the dump) -> GUIDs of the leaves its HCAs are on
    mapped: MappedHosts
    unnamed: list[UnnamedHca]
    rails: list[list[str]]  # switch names declared rails of one another, one list per multi-leaf host set
    ignored_hcas: int = 0  # HCAs left out as no hosts (``BuildOptions.ignored``)

    def gauges(self) -> dict[str, float]:
        tiers = {d + 1 for g, d in self.distance.items() if g not in self.hostless_leaves}
        return {
            "switches": float(len(self.names) + len(self.unreached)),
            "leaf_switches": float(len(self.leaves)),
            "hosts": float(len(self.homes)),
            "mapped_hosts": float(len(self.mapped.nodes)),
            "unmapped_hosts": float(len(self.mapped.unmapped)),
            "excluded_hosts": float(len(self.mapped.excluded)),
            "unnamed_hca_ports": float(len(self.unnamed)),
            "ignored_hcas": float(self.ignored_hcas),
            "hostless_leaf_switches": float(len(self.hostless_leaves)),
            "unreached_switches": float(len(self.unreached)),
            "tiers": float(max(tiers, default=0)),
        }


def build(fabric: Fabric, mapping: NodeNameMapping, options: BuildOptions | None = None) -> TreeBuilder:
    """The strict tree of ``fabric`` (call ``.build()`` on it for the HyperNodes); see :func:`layout`."""
    return layout(fabric, mapping, options).tree


def layout(fabric: Fabric, mapping: NodeNameMapping, options: BuildOptions | None = None) -> Layout:
    """Derive tiers from the cabling, name switches, place mapped hosts (the module docstring says how)."""
    options = options or BuildOptions()
    unnamed_patterns = [re.compile(p) for p in options.unnamed]
    ignored_patterns = [re.compile(p) for p in options.ignored]
    hcas = {
        n.guid: n
        for n in fabric.nodes.values()
        if n.kind == "ca" and not any(p.fullmatch(n.description.strip()) for p in ignored_patterns)
    }
    switches = {n.guid: n for n in fabric.nodes.values() if n.kind == "switch"}
    neighbours: dict[str, set[str]] = {
        guid: {link.peer for link in node.links.values() if link.peer_kind == "switch" and link.peer != guid}
        for guid, node in switches.items()
    }
    mapper = mapping.mapper()
    host_names = {guid: host_of(ca.description, unnamed_patterns) for guid, ca in hcas.items()}
    # An excluded host (a management server, say) is as if it were not cabled: were it on a spine, that spine
    # would otherwise become a leaf. An unnamed or unmapped host is a real host and makes its switch a leaf.
    present = {g for g, host in host_names.items() if host is None or not mapper.excluded(host)}
    leaves = sorted(g for g, n in switches.items() if any(link.peer in present for link in n.links.values()))
    distance = _distances(leaves, neighbours)
    hostless = _hostless_leaves(distance, neighbours)
    unreached = sorted(set(switches) - set(distance))
    names = switch_names({g: switches[g] for g in distance}, unnamed_patterns, len(options.name_prefix))

    tree = TreeBuilder(tier_names=options.tier_names, name_prefix=options.name_prefix, strict=True)
    for guid in sorted(distance, key=names.__getitem__):
        if guid in hostless:
            continue
        up = distance[guid] + 1
        parents = sorted(names[n] for n in neighbours[guid] if distance.get(n) == up and n not in hostless)
        tree.switch(names[guid], parents=parents)

    homes_sets: dict[str, set[str]] = defaultdict(set)
    unnamed: list[UnnamedHca] = []
    for ca in hcas.values():
        host = host_names[ca.guid]
        for link in ca.links.values():
            if link.peer_kind != "switch":
                continue  # cabled back to back to another HCA or a router: no switch, no place in the tree
            if host is None:
                unnamed.append(UnnamedHca(ca.guid, ca.description, names[link.peer], link.peer_port))
            elif link.peer in names:  # else only excluded hosts are on that switch, and it reaches no leaf
                homes_sets[host].add(link.peer)
            else:
                homes_sets.setdefault(host, set())  # still a host of the dump (an excluded one)
    homes = {host: sorted(leaves_of) for host, leaves_of in homes_sets.items()}
    mapped = mapper.map_all(homes)
    rails: list[list[str]] = []
    for host, node_name in sorted(mapped.nodes.items()):
        on = sorted(names[g] for g in homes[host])
        for leaf in on:
            tree.attach(leaf, node_name)
        if len(on) > 1:  # rails: one HCA per leaf; the leaves become one scalable unit
            tree.rails(*on)
            rails.append(on)
    unnamed.sort(key=lambda u: (u.switch, u.port, u.guid))
    ignored = sum(1 for n in fabric.nodes.values() if n.kind == "ca") - len(hcas)
    return Layout(tree, distance, names, leaves, sorted(hostless), unreached, homes, mapped, unnamed, rails, ignored)


def host_of(description: str, unnamed: Iterable[re.Pattern[str]]) -> str | None:
    """The host an HCA belongs to: the first word of its description; None when the description names none."""
    text = description.strip()
    if not text or any(p.fullmatch(text) for p in unnamed):
        return None  # a blank description names nothing, whatever ``unnamedDescriptions`` says
    return text.split()[0]


def _distances(leaves: list[str], neighbours: Mapping[str, set[str]]) -> dict[str, int]:
    distance = dict.fromkeys(leaves, 0)
    queue = deque(leaves)
    while queue:
        guid = queue.popleft()
        for other in neighbours[guid]:
            if other not in distance:
                distance[other] = distance[guid] + 1
                queue.append(other)
    return distance


def _hostless_leaves(distance: Mapping[str, int], neighbours: Mapping[str, set[str]]) -> set[str]:
    """Switches at distance 2, with no uplink, whose every neighbour is an uplink of one single leaf."""
    found = set()
    for guid, d in distance.items():
        near = neighbours[guid]
        if d != 2 or not near or any(distance[n] != 1 for n in near):
            continue
        some = min(near)
        for leaf in neighbours[some]:
            if distance[leaf] == 0 and near <= neighbours[leaf]:
                found.add(guid)
                break
    return found


def switch_names(
    switches: Mapping[str, Node], unnamed: Iterable[re.Pattern[str]], prefix_length: int = 0
) -> dict[str, str]:
    """GUID -> a valid, unique HyperNode name for each switch, the same whatever the order of the dump.

    From the node description: ``MF0;<name>:<model>/U1`` gives ``<name>``; a chassis card's
    ``MF0;<chassis>:<model>/L16/U2`` gives ``<chassis>-l16-u2`` (a card's slot and ASIC tell it from its
    siblings; a one-ASIC box's lone ``/U1`` says nothing). Lowercased, other characters (dots too)
    become ``-``. A description that names nothing gives ``switch-<guid>``; names that several switches
    share get ``-<guid>`` appended; a name too long for 63 characters (with the prefix) keeps its start
    and ends in a hash of the GUID.
    """
    patterns = list(unnamed)
    room = naming.MAX_NAME - prefix_length
    stems = {guid: _stem(node, patterns) for guid, node in switches.items()}
    counts: dict[str, int] = defaultdict(int)
    for stem in stems.values():
        counts[stem] += 1
    names = {guid: _fit(stem if counts[stem] == 1 else f"{stem}-{guid}", guid, room) for guid, stem in stems.items()}
    taken: dict[str, int] = defaultdict(int)
    for name in names.values():
        taken[name] += 1
    # A natural name that equals another switch's "<stem>-<guid>" (contrived, but possible): GUIDs are unique.
    return {guid: name if taken[name] == 1 else _fit(f"switch-{guid}", guid, room) for guid, name in names.items()}


def _stem(node: Node, unnamed: list[re.Pattern[str]]) -> str:
    text = node.description.strip()
    if any(p.fullmatch(text) for p in unnamed):
        return f"switch-{node.guid}"
    found = _SWITCH_DESCRIPTION.fullmatch(text)
    name, path = (found.group(1), found.group(3) or "") if found else (text, "")
    parts = [part for part in path.split("/") if part]
    if len(parts) > 1:
        name = "-".join([name, *parts])
    return naming.sanitize(name.replace(".", "-")) or f"switch-{node.guid}"


def _fit(name: str, guid: str, room: int) -> str:
    if len(name) <= room:
        return name
    digest = hashlib.sha256(guid.encode()).hexdigest()[: naming.HASH_LENGTH]
    return f"{name[: room - len(digest) - 1].rstrip('-.')}-{digest}"
