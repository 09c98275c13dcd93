"""UFM's JSON answers to a :class:`Fabric`: switches, which host sits on which switch, switch-to-switch links.

Pure and lenient: field sets differ between UFM versions, so an element is read for the
few fields used, an element that is not an object is skipped and counted, and each field
has fallbacks (a host's name from ``system_name``, else its system, else the first word of
``node_description``; a switch by GUID, else by name). What is used is validated, and an
answer that cannot be a whole fabric raises :class:`UFMDataError` (see :func:`check_complete`).

- ``GET /ufmRest/resources/systems``: every system with its ``guid`` (also ``system_guid``,
  ``name`` and the GUIDs in its ``ports``' names) and ``system_name``; ``type`` tells a
  switch from a host.
- ``GET /ufmRest/resources/ports``: a host port ("Computer IB Port", ``tier`` 1) names its
  host in ``system_name`` and its switch in ``peer_guid``/``peer_node_guid`` and ``peer_node_name``.
- ``GET /ufmRest/resources/links``: ``source_guid`` and ``destination_guid`` of each cable
  (``*_port_node_description`` ``"<name>:<port>"`` as the fallback).

A list may also come wrapped as ``{"data": [...]}`` (UFM's paginated form).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["switch", "host", "other"]
_HEX = re.compile(r"^(0x)?[0-9a-f]{1,32}$")
_TOTALS = ("total", "total_count", "totalCount", "total_items", "count")
_NONE = {"", "n/a", "na", "none", "null", "unknown", "0000000000000000"}


class UFMDataError(ValueError):
    """UFM's answer is not a usable fabric (empty, partial, not what the API returns)."""


@dataclass(frozen=True)
class System:
    guid: str
    name: str
    kind: Kind


@dataclass
class Fabric:
    """What the three answers say, by system GUID."""

    switches: dict[str, System] = field(default_factory=dict)
    attachments: dict[str, set[str]] = field(default_factory=dict)  # host name -> switch GUIDs its ports reach
    host_switches: set[str] = field(default_factory=set)  # switches with host ports, named hosts or not
    host_ports: Counter[str] = field(default_factory=Counter)  # switch GUID -> host ports on it, named or not
    edges: set[tuple[str, str]] = field(default_factory=set)  # switch GUID pairs, smaller first
    unknown_peers: dict[str, set[str]] = field(default_factory=dict)  # host -> switch references not in systems
    skipped: Counter[str] = field(default_factory=Counter)  # what was left out, and why

    @property
    def hosts(self) -> set[str]:
        return set(self.attachments)


def elements(document: Any, what: str) -> list[Any]:
    """The list an endpoint answered (also from ``{"data": [...]}``); anything else is an error."""
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        data = document["data"]
        for key in _TOTALS:  # a paginated answer that says it holds more than this page
            total = document.get(key)
            if isinstance(total, int) and not isinstance(total, bool) and total > len(data):
                raise UFMDataError(f"partial answer: {what} holds {len(data)} of {total} elements (one page)")
        document = data
    if not isinstance(document, list):
        raise UFMDataError(f"{what}: expected a JSON list, got a JSON {_json_type(document)}")
    return document


def _json_type(value: Any) -> str:
    return {dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _text(item: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip().lower() not in _NONE:
            return value.strip()
    return None


def _guid(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value:016x}"
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text in _NONE or not _HEX.match(text):
        return None
    return text.removeprefix("0x").rjust(16, "0")


def _kind(item: Mapping[str, Any]) -> Kind:
    kind = (_text(item, "type") or "").lower()
    if "switch" in kind or kind in ("gateway", "router"):
        return "switch" if "switch" in kind else "other"
    if kind in ("host", "computer", "server"):
        return "host"
    groups = item.get("groups")
    names = {str(g).lower() for g in groups} if isinstance(groups, list) else set()
    if "switches" in names:
        return "switch"
    if "servers" in names or (_text(item, "technology", "model") or "").lower() == "computer":
        return "host"
    return "other"


class Systems:
    """``resources/systems`` indexed by every GUID a system is known by, and by name."""

    def __init__(self, document: Any) -> None:
        self.by_guid: dict[str, System] = {}
        self.aliases: dict[str, str] = {}  # node or port-owner GUID -> system GUID
        self.by_name: dict[str, list[System]] = defaultdict(list)
        self.skipped: Counter[str] = Counter()
        for item in elements(document, "systems"):
            if not isinstance(item, dict):
                self.skipped["systems element that is not an object"] += 1
                continue
            guid = _guid(item.get("system_guid")) or _guid(item.get("guid")) or _guid(item.get("name"))
            if guid is None:
                self.skipped["system without a GUID"] += 1
                continue
            system = System(guid, _text(item, "system_name") or guid, _kind(item))
            if guid in self.by_guid:
                self.skipped["system listed twice"] += 1
                continue
            self.by_guid[guid] = system
            self.by_name[system.name].append(system)
            for key in ("guid", "system_guid", "name"):
                if alias := _guid(item.get(key)):
                    self.aliases.setdefault(alias, guid)
            ports = item.get("ports")
            for port in ports if isinstance(ports, list) else []:
                # Port names are "<node GUID>_<number>": a director's ASICs map to their chassis this way.
                if isinstance(port, str) and (alias := _guid(port.rsplit("_", 1)[0])):
                    self.aliases.setdefault(alias, guid)

    def find(self, guid: Any = None, name: str | None = None, kind: Kind | None = None) -> System | None:
        """The system with this GUID (or alias), else the one system (of ``kind``, if given) with this name."""
        if (key := _guid(guid)) is not None and (found := self.aliases.get(key)) is not None:
            return self.by_guid[found]
        named = self.by_name.get(name, []) if name is not None else []
        if kind is not None and len(named) > 1:
            named = [s for s in named if s.kind == kind]  # a host named like its switch: the switch
        return named[0] if len(named) == 1 else None

    @property
    def switches(self) -> dict[str, System]:
        return {g: s for g, s in self.by_guid.items() if s.kind == "switch"}


def _is_host_port(item: Mapping[str, Any], systems: Systems) -> bool:
    description = (_text(item, "description") or "").lower()
    if "computer" in description:  # "Computer IB Port"; what Volcano's ufm source keys on
        return True
    if "switch" in description:
        return False
    own = systems.find(item.get("systemID") or item.get("system_guid"), _text(item, "system_name"))
    if own is not None and own.kind != "other":
        return own.kind == "host"
    return item.get("tier") == 1  # UFM gives host ports tier 1, switch ports 3 or 4


# What an adapter that never got a node description is called instead of its host: its GUID, or what it is
# ("MT4123 ConnectX6   Mellanox Technologies"). Not a host name; a host called "mtl-gpu-01" is one.
_PLACEHOLDER = re.compile(r"(0x)?[0-9a-f]{16}|mt\d+\s+connectx.*|.*\bmellanox technologies\b.*", re.I)


def _named(name: str | None) -> str | None:
    return None if name is None or _PLACEHOLDER.fullmatch(name) else name


def _host_name(item: Mapping[str, Any], systems: Systems) -> str | None:
    if name := _named(_text(item, "system_name")):
        return name
    own = systems.find(item.get("systemID") or item.get("system_guid"))
    if own is not None and own.name != own.guid and (name := _named(own.name)):
        return name
    description = _text(item, "node_description")
    # "luna-0218 mlx5_4": the host, then the adapter.
    if description and _named(description):
        return description.split()[0]
    return None


def parse_fabric(ports: Any, links: Any, systems: Any) -> Fabric:
    """The three answers as one :class:`Fabric` (not yet checked: see :func:`check_complete`)."""
    index = Systems(systems)
    fabric = Fabric(switches=index.switches)
    fabric.skipped.update(index.skipped)
    for item in elements(ports, "ports"):
        if not isinstance(item, dict):
            fabric.skipped["ports element that is not an object"] += 1
            continue
        if not _is_host_port(item, index):
            continue
        host = _host_name(item, index)
        peer_guid = item.get("peer_node_guid") or item.get("peer_guid")
        peer_name = _text(item, "peer_node_name")
        if _guid(peer_guid) is None and peer_name is None:
            fabric.skipped["host port without a peer (not cabled, or down)"] += 1
            continue
        peer = index.find(peer_guid, peer_name, "switch")
        if peer is None:
            what = host or _text(item, "node_description") or "a host port"
            fabric.unknown_peers.setdefault(what, set()).add(peer_name or str(_guid(peer_guid)))
            continue
        if peer.kind != "switch":
            fabric.skipped["host port whose peer is not a switch"] += 1
            continue
        fabric.host_switches.add(peer.guid)  # a leaf even when none of its hosts has a name
        fabric.host_ports[peer.guid] += 1
        if host is None:
            fabric.skipped["host port without a host name"] += 1
            continue
        fabric.attachments.setdefault(host, set()).add(peer.guid)
    for item in elements(links, "links"):
        if not isinstance(item, dict):
            fabric.skipped["links element that is not an object"] += 1
            continue
        ends = [_link_end(item, side, index) for side in ("source", "destination")]
        if ends[0] is None or ends[1] is None:
            fabric.skipped["link with an end not in systems"] += 1
            continue
        if ends[0].kind == "switch" and ends[1].kind == "switch" and ends[0].guid != ends[1].guid:
            a, b = sorted((ends[0].guid, ends[1].guid))
            fabric.edges.add((a, b))
    return fabric


def _link_end(item: Mapping[str, Any], side: str, systems: Systems) -> System | None:
    description = _text(item, f"{side}_port_node_description")
    name = description.rsplit(":", 1)[0] if description and ":" in description else description
    return systems.find(item.get(f"{side}_guid"), name, "switch")


def check_complete(fabric: Fabric) -> None:
    """Refuse an answer that cannot be the whole fabric ("partial"); the message says what is missing.

    - no host port attached to a known switch (an empty or unrelated answer);
    - any host port whose switch is absent from systems: the answers were taken at
      different moments or one of them is cut short, so the rest cannot be trusted either.
    """
    if not fabric.switches:
        raise UFMDataError("systems: no switch in the answer")
    if fabric.unknown_peers:
        sample = _sample(f"{host} -> {', '.join(sorted(refs))}" for host, refs in sorted(fabric.unknown_peers.items()))
        raise UFMDataError(
            f"partial answer: {len(fabric.unknown_peers)} host(s) have ports on a switch that systems does not list "
            f"({sample}); refusing it rather than dropping them"
        )
    if not fabric.attachments:
        skipped = f" (skipped: {_counts(fabric.skipped)})" if fabric.skipped else ""
        raise UFMDataError(f"ports: no host port cabled to a switch{skipped}")


def _sample(items: Iterable[str], limit: int = 5) -> str:
    listed = list(items)
    more = f", and {len(listed) - limit} more" if len(listed) > limit else ""
    return "; ".join(listed[:limit]) + more


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counter.items()))
