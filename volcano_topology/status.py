"""Status of owned HyperNodes, as observed: pure functions.

``nodeCount`` is exactly the value Volcano's own HyperNode controller writes, so that two
writers of it always agree: the number of distinct names a HyperNode's members select.
An ``exactMatch`` member counts its name (of a Node or of a child HyperNode: a spine
counts its children, not the nodes under them); a ``regexMatch`` member counts the
Nodes whose name RE2 finds the pattern in (Go's ``regexp.MatchString``: unanchored); a
``labelMatch`` member counts the Nodes its label selector selects.

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


def member_names(member: Member, nodes: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The names one member selects, as Volcano's controller counts them."""
    selector = member.selector
    if selector is None:
        return set()
    if selector.exact_match is not None:
        return {selector.exact_match.name}
    if selector.regex_match is not None:
        try:
            pattern = re2.compile(selector.regex_match.pattern, _RE2_OPTIONS)
        except re2.error:
            return set()
        return {name for name in nodes if pattern.search(name)}
    if selector.label_match is not None:
        return {name for name, labels in nodes.items() if selector_matches(selector.label_match, labels)}
    return set()


def node_count(hypernode: HyperNode, nodes: Mapping[str, Mapping[str, str]]) -> int:
    """Volcano's ``status.nodeCount`` of one HyperNode (``nodes``: every Node's name -> labels)."""
    selected: set[str] = set()
    for member in hypernode.members:
        selected |= member_names(member, nodes)
    return len(selected)


def count_inputs(hypernode: HyperNode) -> tuple[bool, frozenset[str]]:
    """What of the Node view ``node_count`` reads: (the set of names?, these label keys).

    An ``exactMatch`` member reads nothing (its name counts whether or not such a Node exists);
    a ``regexMatch`` member reads the names; a ``labelMatch`` member reads the names (a Node
    added without a key can match ``NotIn``/``DoesNotExist``, or an empty selector) and the keys
    it names. A change to anything else cannot change the count.
    """
    names = False
    keys: set[str] = set()
    for member in hypernode.members:
        selector = member.selector
        if selector is None:
            continue
        if selector.regex_match is not None:
            names = True
        elif selector.label_match is not None:
            names = True
            keys.update((selector.label_match.match_labels or {}).keys())
            keys.update(r.key for r in selector.label_match.match_expressions or [])
    return names, frozenset(keys)


def node_counts(hypernodes: Mapping[str, HyperNode], nodes: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    return {name: node_count(hypernode, nodes) for name, hypernode in hypernodes.items()}


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
