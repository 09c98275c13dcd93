"""Status of owned HyperNodes, as observed: pure functions.

``nodeCount`` is the number of distinct existing Nodes in a HyperNode's subtree, with
Volcano's member selection: ``exactMatch`` by name; ``regexMatch`` with RE2 searched
anywhere in the name (Go's ``regexp.MatchString``: unanchored); ``labelMatch`` as a
Kubernetes label selector. HyperNode members contribute their own subtree's nodes.

The ``Synced`` condition says whether the object is what its provider last asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2

from volcano_topology.api import HyperNode, LabelSelector, Member

SYNCED = "Synced"
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions or []:
        values = set(requirement.values or [])
        present = requirement.key in labels
        if requirement.operator == "In" and not (present and labels[requirement.key] in values):
            return False
        if requirement.operator == "NotIn" and present and labels[requirement.key] in values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
        if requirement.operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # an invalid selector selects nothing, as Volcano's conversion fails
    return True


def member_nodes(member: Member, nodes: Mapping[str, Mapping[str, str]]) -> set[str]:
    selector = member.selector
    if selector is None:
        return set()
    if selector.exact_match is not None:
        return {selector.exact_match.name} & nodes.keys()
    if selector.regex_match is not None:
        try:
            pattern = re2.compile(selector.regex_match.pattern, _RE2_OPTIONS)
        except re2.error:
            return set()
        return {name for name in nodes if pattern.search(name)}
    if selector.label_match is not None:
        return {name for name, labels in nodes.items() if selector_matches(selector.label_match, labels)}
    return set()


def node_counts(hypernodes: Mapping[str, HyperNode], nodes: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    """Distinct nodes under each HyperNode (cycles, already refused by the writer, are cut)."""
    found: dict[str, set[str]] = {}

    def under(name: str, seen: frozenset[str]) -> set[str]:
        if name in found:
            return found[name]
        result: set[str] = set()
        for member in hypernodes[name].members:
            if member.type == "Node":
                result |= member_nodes(member, nodes)
            elif member.selector is not None and member.selector.exact_match is not None:
                child = member.selector.exact_match.name
                if child in hypernodes and child not in seen:
                    result |= under(child, seen | {child})
        found[name] = result
        return result

    return {name: len(under(name, frozenset({name}))) for name in hypernodes}


@dataclass(frozen=True)
class SyncState:
    synced: bool
    reason: str
    message: str


def condition(
    state: SyncState, current: list[dict[str, Any]] | None, generation: int | None, now: str
) -> dict[str, Any]:
    """The Synced condition; ``lastTransitionTime`` only moves when the status value changes."""
    previous = next((c for c in current or [] if c.get("type") == SYNCED), None)
    value = "True" if state.synced else "False"
    changed = previous is None or previous.get("status") != value
    out: dict[str, Any] = {
        "type": SYNCED,
        "status": value,
        "reason": state.reason,
        "message": state.message[:32768],
        "lastTransitionTime": now if changed or previous is None else previous.get("lastTransitionTime", now),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def status_differs(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Compares only the fields we write, ignoring a condition's transition time when nothing else changed."""
    current = current or {}
    if "nodeCount" in desired and current.get("nodeCount") != desired["nodeCount"]:
        return True
    if "conditions" in desired:
        have = {c.get("type"): c for c in current.get("conditions") or []}
        for wanted in desired["conditions"]:
            got = have.get(wanted["type"])
            if got is None or any(got.get(k) != wanted.get(k) for k in wanted if k != "lastTransitionTime"):
                return True
    return False
