"""``ibnetdiscover`` topology output -> :class:`Fabric`: pure, one pass, all or nothing.

The format (infiniband-diags' ``ibnetdiscover`` without ``-p``/``-l``): a ``#`` comment header,
then one block per node, each block preceded by an empty line::

    vendid=0x2c9
    devid=0xd2f0
    sysimgguid=0xc42a10300a9b026
    switchguid=0xc42a10300a9b026(c42a10300a9b026)
    Switch  41 "S-0c42a10300a9b026"      # "MF0;leaf-1:MQM8700/U1" enhanced port 0 lid 3894 lmc 0
    [1]     "H-1c34da03005503dc"[1](1c34da03005503dc)   # "host1 mlx5_0" lid 65535 4xHDR
    [21]    "S-0c42a103008b5558"[20]     # "MF0;spine-1:MCS8500/L16/U2" lid 175 4xHDR

    vendid=0x2c9
    ...
    caguid=0x1c34da03005503dc
    Ca      1 "H-1c34da03005503dc"       # "host1 mlx5_0"
    [1](1c34da03005503dc)   "S-0c42a10300a9b026"[1]    # lid 65535 lmc 0 "MF0;leaf-1:MQM8700/U1" lid 3894 4xHDR

Every cable is listed twice, once in the block of each end. That is what makes truncation
detectable, and the parser insists on it (see :func:`parse` for what is fatal and what is
tolerated). Whitespace between tokens may be missing (``Switch41 "S-…"# "…"``, as in dumps
copied out of a terminal), line ends may be CRLF, ``-g`` (grouped) output with ``[ext N]``
port numbers and chassis comments is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

NodeKind = Literal["switch", "ca", "router"]

_KIND_OF_WORD: dict[str, NodeKind] = {"Switch": "switch", "Ca": "ca", "Rt": "router"}
_KIND_OF_LETTER: dict[str, NodeKind] = {"S": "switch", "H": "ca", "R": "router"}
_LETTER_OF_KIND = {kind: letter for letter, kind in _KIND_OF_LETTER.items()}

# Compiled once; every pattern is linear (no nested quantifiers), so garbage cannot make them slow.
_HEADER = re.compile(r"(vendid|devid|sysimgguid|switchguid|caguid|rtguid)=(.*)")
_HEADER_VALUE = re.compile(r"0x([0-9a-fA-F]{1,16})\b")
_NODE_WORD = re.compile(r"(?:Switch|Ca|Rt)(?=[\s\d\"])")
# Port numbers and counts: at most 9 digits (ports are 8-bit in InfiniBand), so int() never meets a huge one.
_NODE = re.compile(r'(Switch|Ca|Rt)\s*(\d{1,9})\s*"([SHR])-([0-9a-fA-F]{1,16})"\s*#\s*"(.*)"(.*)')
_SWITCH_TAIL = re.compile(r"\blid \d+ lmc \d+\b")
_PORT = re.compile(
    r"\[(\d{1,9})\](?:\[ext \d+\])?(?:\([0-9a-fA-F]{1,16}\))?\s*"  # local port, its GUID on a CA
    r'"([SHR])-([0-9a-fA-F]{1,16})"\[(\d{1,9})\](?:\[ext \d+\])?\s*(?:\([0-9a-fA-F]{1,16}\))?\s*'  # the peer
    r"#(.*)"
)
# Every port line ends with the peer's LID and the link's width and speed ("lid 3894 4xHDR"). Only the
# last line of a text that does not end in a newline can be cut short (by truncation), so only there
# must the speed be one known in full: "4xHD" is "4xHDR" cut; elsewhere a speed newer than this list passes.
_LINK_TAIL = re.compile(r"\blid \d+ (?:\d+x|\?+)\S+")
_LINK_TAIL_WHOLE = re.compile(r"\blid \d+ (?:\d+x|\?+)(?:SDR|DDR|QDR|FDR10|FDR|EDR|HDR|NDR|XDR|\?+|undefined)(?=\s|$)")

MAX_SHOWN = 10  # problems spelled out in a ParseError's message (all are in .problems)


class ParseError(ValueError):
    """The text is not a complete, consistent ibnetdiscover dump; ``problems`` holds (line, message) pairs.

    ``line`` is the first line concerned (1-based, counting ``\\n``-separated lines as editors do).
    """

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = sorted(problems)
        self.line = self.problems[0][0]
        shown = "; ".join(f"line {line}: {message}" for line, message in self.problems[:MAX_SHOWN])
        more = len(self.problems) - MAX_SHOWN
        super().__init__(shown + (f" (and {more} more)" if more > 0 else ""))


@dataclass(frozen=True, slots=True)
class Link:
    """One end of a cable, as listed in the block of the node that owns ``port``."""

    port: int
    peer: str  # the peer node's GUID: 16 lowercase hex digits
    peer_port: int
    peer_kind: NodeKind
    line: int


@dataclass(slots=True)
class Node:
    kind: NodeKind
    guid: str  # 16 lowercase hex digits
    ports: int  # as the node line declares it (``Switch 41`` -> 41)
    description: str  # the NodeDescription, quotes removed
    line: int  # of the node line
    links: dict[int, Link] = field(default_factory=dict)  # port -> link; only connected ports are listed
    sysimgguid: str | None = None

    def __str__(self) -> str:
        return f'{self.kind} {_LETTER_OF_KIND[self.kind]}-{self.guid} "{self.description}" (line {self.line})'


@dataclass
class Fabric:
    """Every node of the dump by GUID, with its links; ``ignored`` lists tolerated noise lines."""

    nodes: dict[str, Node]
    ignored: list[int] = field(default_factory=list)
    lines: int = 0

    @property
    def switches(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "switch"]

    @property
    def cas(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "ca"]


def _guid(hex_digits: str) -> str:
    """16 lowercase hex digits (headers drop leading zeros: ``0xc42a...`` is ``0c42a...``)."""
    return hex_digits.lower().zfill(16)


def parse(text: str) -> Fabric:
    """Parse a whole dump, or raise :class:`ParseError` naming the line(s); never returns part of a fabric.

    Fatal (the dump is truncated, spliced or not ibnetdiscover output):

    - a malformed node line (``Switch``/``Ca``/``Rt``), port line (``[N]...``) or header value;
    - a port line that is not inside a node block, or that is cut short (no ``lid N <width><speed>``;
      on the last line of a text without a final newline, the speed must be a known one, ``HDR`` not ``HD``);
    - a port number outside ``1..N`` of its node's ``[N]`` port count, or listed twice in one block;
    - a header (``vendid=``...) not followed by its node line (also at the end of the file), or whose
      ``switchguid``/``caguid``/``rtguid`` is not the GUID of the node line that follows;
    - the same node GUID in two blocks;
    - a node block listing no port (ibnetdiscover reaches every node through a cable);
    - a cable listed by one end only: a port whose peer has no block, is of another kind than the
      port line says, or does not list the cable back (this is how a dump cut after a complete line
      or missing blocks is caught);
    - no Switch block at all.

    Tolerated: CRLF line ends, missing whitespace between tokens, ``#`` comment lines, and any other
    line outside a port list (a terminal log's banner, a shell prompt, ``-g`` chassis headings).
    Such lines end a node block, so a port line after one is fatal; their numbers are in
    :attr:`Fabric.ignored`.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    maybe_cut = 0 if text.endswith("\n") else len(lines)  # the number of a last line that may be cut short
    nodes: dict[str, Node] = {}
    ignored: list[int] = []
    header: dict[str, str] = {}
    header_line = 0
    current: Node | None = None

    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            if header:
                raise ParseError([(header_line, "node header is not followed by its node line")])
            current = None
            continue
        first = line[0]
        if first == "[":
            if current is None:
                raise ParseError([(number, "port line outside a node block")])
            _port(current, line, number, number == maybe_cut)
            continue
        if first == "#":
            continue
        found = _HEADER.match(line)
        if found is not None:
            value = _HEADER_VALUE.match(found.group(2))
            if value is None:
                raise ParseError([(number, f"{found.group(1)}= is not a hexadecimal 0x... value")])
            if found.group(1) in header:  # a second header began: the first one's node line is missing
                raise ParseError([(header_line, "node header is not followed by its node line")])
            if not header:
                header_line = number
            header[found.group(1)] = _guid(value.group(1))
            current = None
            continue
        if _NODE_WORD.match(line):
            current = _node(line, number, header, nodes)
            header = {}
            continue
        if header:
            raise ParseError([(header_line, "node header is not followed by its node line")])
        ignored.append(number)  # noise: a terminal log's banner, a prompt, a chassis heading
        current = None

    if header:
        raise ParseError([(header_line, "the file ends inside a node header: truncated?")])
    if not any(node.kind == "switch" for node in nodes.values()):
        raise ParseError([(max(len(lines), 1), "no Switch block found: not ibnetdiscover topology output, or empty")])
    problems = _one_sided_links(nodes)
    if problems:
        raise ParseError(problems)
    return Fabric(nodes, ignored, len(lines))


def _node(line: str, number: int, header: dict[str, str], nodes: dict[str, Node]) -> Node:
    found = _NODE.fullmatch(line)
    if found is None:
        raise ParseError([(number, 'malformed node line: expected e.g. Switch 41 "S-<guid>" # "<description>" ...')])
    word, ports, letter, guid_hex, description, tail = found.groups()
    kind = _KIND_OF_WORD[word]
    if _KIND_OF_LETTER[letter] != kind:
        raise ParseError([(number, f'{word} line names a node "{letter}-...", which is not a {word}')])
    if kind == "switch" and not _SWITCH_TAIL.search(tail):
        raise ParseError([(number, "Switch line is cut short: no 'lid N lmc N'")])
    guid = _guid(guid_hex)
    declared = header.get({"switch": "switchguid", "ca": "caguid", "router": "rtguid"}[kind])
    if declared is not None and declared != guid:
        raise ParseError([(number, f"node line GUID {guid} differs from the header's {declared}")])
    if guid in nodes:
        raise ParseError([(number, f"node {guid} appears twice (first at line {nodes[guid].line})")])
    node = Node(kind, guid, int(ports), description, number, sysimgguid=header.get("sysimgguid"))
    nodes[guid] = node
    return node


def _port(node: Node, line: str, number: int, last: bool) -> None:
    found = _PORT.match(line)
    if found is None:
        raise ParseError([(number, 'malformed port line: expected e.g. [1] "S-<guid>"[2] # ... lid N 4xHDR')])
    port_text, letter, peer_hex, peer_port_text, rest = found.groups()
    if not (_LINK_TAIL_WHOLE if last else _LINK_TAIL).search(rest, rest.rfind('"') + 1):
        raise ParseError([(number, "port line is cut short: no 'lid N <width><speed>' at its end (truncated?)")])
    port, peer_port = int(port_text), int(peer_port_text)
    if not 1 <= port <= node.ports:
        raise ParseError([(number, f"port {port} is outside 1..{node.ports} of the node at line {node.line}")])
    if port in node.links:
        raise ParseError([(number, f"port {port} is listed twice (first at line {node.links[port].line})")])
    node.links[port] = Link(port, _guid(peer_hex), peer_port, _KIND_OF_LETTER[letter], number)


def _one_sided_links(nodes: dict[str, Node]) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    for node in nodes.values():
        if not node.links:  # ibnetdiscover reaches every node through a cable, so each block lists one
            problems.append((node.line, f"the {node.kind} at line {node.line} lists no port (truncated?)"))
        for link in node.links.values():
            peer = nodes.get(link.peer)
            here = f"port {link.port} of the {node.kind} at line {node.line}"
            if peer is None:
                problems.append(
                    (link.line, f"{here}: its peer {_LETTER_OF_KIND[link.peer_kind]}-{link.peer} has no block "
                                "in the dump (truncated?)")
                )  # fmt: skip
            elif peer.kind != link.peer_kind:
                problems.append((link.line, f"{here}: its peer {link.peer} is a {peer.kind} (line {peer.line})"))
            else:
                back = peer.links.get(link.peer_port)
                if back is None:
                    problems.append(
                        (link.line, f"{here}: the peer's block at line {peer.line} does not list its port "
                                    f"{link.peer_port} (truncated?)")
                    )  # fmt: skip
                elif back.peer != node.guid or back.peer_port != link.port:
                    problems.append(
                        (link.line, f"{here}: the peer's port {link.peer_port} (line {back.line}) leads to "
                                    f"{back.peer} port {back.peer_port}, not back here")
                    )  # fmt: skip
    return problems
