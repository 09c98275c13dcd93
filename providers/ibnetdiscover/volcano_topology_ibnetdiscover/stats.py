"""What a dump's fabric looks like, to decide on and check its tiers.

    python -m volcano_topology_ibnetdiscover.stats FILE [--node-names JSON]


Prints switch degrees, distances from the leaves, hosts and their HCAs, and the HyperNodes per tier
that the provider would write (``--node-names '{"exclude": [".*ufm"]}'`` takes a ``nodeNames`` block).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable

from volcano_topology.sdk.hostnames import NodeNameMapping
from volcano_topology_ibnetdiscover.build import layout
from volcano_topology_ibnetdiscover.parse import Fabric, parse


def counted(values: Iterable[object]) -> str:
    return "; ".join(f"{value} x{count}" for value, count in sorted(Counter(values).items(), key=lambda i: str(i[0])))


def report(fabric: Fabric, mapping: NodeNameMapping) -> list[str]:
    found = layout(fabric, mapping)
    hypernodes = found.tree.build()
    switches = {n.guid: n for n in fabric.switches}
    out = [
        f"{len(switches)} switches, {len(fabric.cas)} HCAs, {sum(len(n.links) for n in fabric.nodes.values())} "
        f"port lines; noise lines ignored: {', '.join(map(str, fabric.ignored)) or 'none'}",
        "switches by distance from the nearest leaf (tier = distance + 1):",
    ]
    for d in sorted(set(found.distance.values())):
        at = [g for g, dist in found.distance.items() if dist == d]
        shapes = []
        for g in at:
            links = switches[g].links.values()
            near = Counter(found.distance.get(link.peer) for link in links if link.peer_kind == "switch")
            hcas = sum(1 for link in links if link.peer_kind == "ca")
            shapes.append(f"hca={hcas} down={near.get(d - 1, 0)} same={near.get(d, 0)} up={near.get(d + 1, 0)}")
        left = sum(1 for g in at if g in found.hostless_leaves)
        out.append(
            f"  distance {d}: {len(at)} switches" + (f" ({left} left out: leaves without hosts)" if left else "")
        )
        out.append(f"    cables per switch: {counted(shapes)}")
    if found.unreached:
        out.append(f"  reaching no leaf: {len(found.unreached)}")
    hcas_per_host: Counter[str] = Counter()
    for ca in fabric.cas:
        words = ca.description.split()
        if words and ca.description not in {u.description for u in found.unnamed}:
            hcas_per_host[words[0]] += 1
    out.append(
        f"hosts: {len(found.homes)} named (HCAs per host: {counted(hcas_per_host.values())}); "
        f"leaves per host: {counted(len(v) for v in found.homes.values())}"
    )
    out.append(
        f"  mapped {len(found.mapped.nodes)}, unmapped {len(found.mapped.unmapped)}, excluded "
        f"{len(found.mapped.excluded)}; HCA ports naming no host: {len(found.unnamed)} "
        f"({counted(u.description for u in found.unnamed) or 'none'})"
    )
    out.append(f"rails (leaves joined by multi-leaf hosts): {found.rails or 'none'}")
    out.append(f"HyperNodes: {len(hypernodes)}")
    for tier in sorted({h.spec.tier for h in hypernodes if h.spec is not None}):
        at_tier = [h for h in hypernodes if h.spec is not None and h.spec.tier == tier]
        name = at_tier[0].spec.tier_name if at_tier[0].spec is not None else None
        out.append(f"  tier {tier} ({name}): {len(at_tier)}; members: {counted(len(h.members) for h in at_tier)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volcano_topology_ibnetdiscover.stats", description=__doc__)
    parser.add_argument("file", help="an ibnetdiscover dump")
    parser.add_argument("--node-names", default="{}", help="a nodeNames block, as JSON")
    args = parser.parse_args(argv)
    with open(args.file, "rb") as handle:
        fabric = parse(handle.read().decode("utf-8", "replace"))
    print("\n".join(report(fabric, NodeNameMapping.model_validate(json.loads(args.node_names)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
