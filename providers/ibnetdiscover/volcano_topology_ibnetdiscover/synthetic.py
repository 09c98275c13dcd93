"""Write ibnetdiscover output: from a :class:`Fabric` (a round trip of :func:`parse`), or for a made-up fat tree.

For tests and benchmarks: :func:`fat_tree` makes a fabric of pods (leaves and their spines) under core
switches, hosts with one HCA per rail; :func:`render_blocks` writes each node's block as ibnetdiscover
does (tabs and all, or ``compact`` like a dump copied out of a terminal: ``Switch41 "S-…"# "…"``).
"""

from __future__ import annotations

from collections.abc import Iterable

from volcano_topology_ibnetdiscover.parse import Fabric, Link, Node, NodeKind

_LETTER: dict[NodeKind, str] = {"switch": "S", "ca": "H", "router": "R"}


def connect(a: Node, port_a: int, b: Node, port_b: int) -> None:
    """Cable ``a``'s port to ``b``'s (listed in both blocks, as ibnetdiscover does)."""
    a.links[port_a] = Link(port_a, b.guid, port_b, b.kind, 0)
    b.links[port_b] = Link(port_b, a.guid, port_a, a.kind, 0)


def fat_tree(
    *,
    pods: int = 2,
    leaves_per_pod: int = 2,
    spines_per_pod: int = 2,
    cores: int = 2,
    hosts_per_leaf: int = 2,
    rails: int = 1,
    host_prefix: str = "node",
) -> Fabric:
    """Leaves cabled to every spine of their pod, spines to every core (none: two tiers).

    With ``rails`` > 1, each host has one HCA on each of ``rails`` consecutive leaves of its pod
    (``leaves_per_pod`` must be a multiple of ``rails``); ``hosts_per_leaf`` counts hosts per group.
    """
    if leaves_per_pod % rails:
        raise ValueError("leaves_per_pod must be a multiple of rails")
    nodes: dict[str, Node] = {}
    counter = iter(range(1, 1 << 40))

    def node(kind: NodeKind, description: str, ports: int) -> Node:
        guid = f"{0x0002C903 if kind == 'switch' else 0x0002C904:08x}{next(counter):08x}"
        nodes[guid] = Node(kind, guid, ports, description, 0)
        return nodes[guid]

    core_nodes = [node("switch", f"MF0;core-{c}:MQM8700/U1", pods * spines_per_pod + 1) for c in range(cores)]
    for p in range(pods):
        spines = [
            node("switch", f"MF0;spine-{p}-{s}:MQM8700/U1", leaves_per_pod + cores + 1) for s in range(spines_per_pod)
        ]
        for s, spine in enumerate(spines):
            for c, core in enumerate(core_nodes):
                connect(spine, leaves_per_pod + 1 + c, core, p * spines_per_pod + s + 1)
        leaves = [
            node("switch", f"MF0;leaf-{p}-{i}:MQM8700/U1", hosts_per_leaf + spines_per_pod + 1)
            for i in range(leaves_per_pod)
        ]
        for i, leaf in enumerate(leaves):
            for s, spine in enumerate(spines):
                connect(leaf, hosts_per_leaf + 1 + s, spine, i + 1)
        for group in range(leaves_per_pod // rails):
            for h in range(hosts_per_leaf):
                host = f"{host_prefix}-{p}-{group}-{h}"
                for r in range(rails):
                    hca = node("ca", f"{host} mlx5_{r}", 1)
                    connect(hca, 1, leaves[group * rails + r], h + 1)
    return Fabric(nodes)


def render_blocks(fabric: Fabric, *, compact: bool = False) -> list[str]:
    """One text per node block (without the empty line that precedes each), switches first."""
    lids = {guid: index + 1 for index, guid in enumerate(sorted(fabric.nodes))}
    tab, tabs = ("", "") if compact else ("\t", "\t\t")
    blocks = []
    ordered = sorted(fabric.nodes.values(), key=lambda n: (n.kind != "switch", n.line, n.guid))
    for n in ordered:
        lines = ["vendid=0x2c9", "devid=0xd2f0" if n.kind == "switch" else "devid=0x101b"]
        lines.append(f"sysimgguid=0x{(n.sysimgguid or n.guid).lstrip('0') or '0'}")
        short = n.guid.lstrip("0") or "0"
        if n.kind == "switch":
            lines.append(f"switchguid=0x{short}({short})")
            lines.append(
                f'Switch{tab}{n.ports} "S-{n.guid}"{tabs}# "{n.description}" enhanced port 0 lid {lids[n.guid]} lmc 0'
            )
        else:
            word = "Ca" if n.kind == "ca" else "Rt"
            lines.append(f"{'caguid' if n.kind == 'ca' else 'rtguid'}=0x{short}")
            lines.append(f'{word}{tab}{n.ports} "{_LETTER[n.kind]}-{n.guid}"{tabs}# "{n.description}"')
        for port in sorted(n.links):
            lines.append(_port_line(n, n.links[port], fabric, lids, tab, tabs))
        blocks.append("\n".join(lines))
    return blocks


def _port_line(n: Node, link: Link, fabric: Fabric, lids: dict[str, int], tab: str, tabs: str) -> str:
    peer = fabric.nodes[link.peer]
    ref = f'"{_LETTER[peer.kind]}-{peer.guid}"[{link.peer_port}]'
    if n.kind == "switch":
        guid = f"({peer.guid.lstrip('0')}) " if peer.kind != "switch" else ""
        return f'[{link.port}]{tab}{ref}{guid}{tabs}# "{peer.description}" lid {lids[peer.guid]} 4xHDR'
    return f'[{link.port}]({n.guid.lstrip("0")}) {tab}{ref}{tabs}# lid {lids[n.guid]} lmc 0 "{peer.description}" lid {lids[peer.guid]} 4xHDR'  # noqa: E501


def render(blocks: Iterable[str], *, crlf: bool = False) -> str:
    """A whole dump: ibnetdiscover's comment header, then each block after an empty line."""
    text = "#\n# Topology file: generated by volcano_topology_ibnetdiscover.synthetic\n#\n"
    text += "".join("\n" + block + "\n" for block in blocks)
    return text.replace("\n", "\r\n") if crlf else text
