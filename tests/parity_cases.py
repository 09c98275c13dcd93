"""HyperNode documents, valid and invalid, covering every CRD and admission rule.

Each case says what each layer decides:

- ``schema``: the API server with only the CRD (OpenAPI, CEL, object metadata);
- ``policy``: Volcano's ValidatingAdmissionPolicy, when the schema accepted it;
- ``webhook``: Volcano's Go webhook (RE2 compilation), when the policy accepted it.

An invalid case also names the rule and field path the model must report.
``status`` cases are checked by the API server through the ``/status`` subresource
(a create ignores status when the subresource is on).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

API_VERSION = "topology.volcano.sh/v1alpha1"


@dataclass(frozen=True)
class Case:
    id: str
    document: dict[str, Any]
    schema: bool = True
    policy: bool = True
    webhook: bool = True
    rule: str = ""
    path: str = ""
    status: bool = False

    @property
    def valid(self) -> bool:
        return self.schema and self.policy and self.webhook


def node(name: str) -> dict[str, Any]:
    return {"type": "Node", "selector": {"exactMatch": {"name": name}}}


def hn(name: str = "parity", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"tier": 1, "members": [node("node-1")]}
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "HyperNode", "metadata": {"name": name}, "spec": body}


def with_(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``document`` with the dotted ``path`` set to ``value`` (digits index lists)."""
    out = copy.deepcopy(document)
    *parents, last = path.split(".")
    target: Any = out
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return out


def without(document: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(document)
    *parents, last = path.split(".")
    target: Any = out
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    del target[last]
    return out


def regex(pattern: str) -> dict[str, Any]:
    return hn(members=[{"type": "Node", "selector": {"regexMatch": {"pattern": pattern}}}])


def selector(**kinds: Any) -> dict[str, Any]:
    return hn(members=[{"type": "Node", "selector": kinds}])


def condition(**overrides: Any) -> dict[str, Any]:
    base = {
        "type": "Synced",
        "status": "True",
        "reason": "Applied",
        "message": "",
        "lastTransitionTime": "2026-11-23T10:00:00Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def status(**fields: Any) -> dict[str, Any]:
    return {**hn("parity-status"), "status": fields}


EXACT = {"exactMatch": {"name": "node-1"}}
REGEX = {"regexMatch": {"pattern": "node-[0-9]+"}}
LABELS = {"labelMatch": {"matchLabels": {"topology/rack": "r1"}}}

CASES: list[Case] = [
    # ---- valid everywhere ----------------------------------------------------------
    Case("valid-exact-nodes", hn(members=[node("node-1"), node("node-2")])),
    Case(
        "valid-hypernode-members",
        hn(
            tier=2,
            members=[
                {"type": "HyperNode", "selector": {"exactMatch": {"name": "leaf-a"}}},
                {"type": "HyperNode", "selector": {"exactMatch": {"name": "leaf-b"}}},
            ],
        ),
    ),
    Case("valid-regex", regex("node-[0-9]+")),
    Case("valid-regex-escaped-balanced", regex(r"gpu\(1\)-[a-z]{2}")),
    Case("valid-label-match-labels", selector(**LABELS)),
    Case(
        "valid-label-match-expressions",
        selector(
            labelMatch={
                "matchExpressions": [
                    {"key": "topology/rack", "operator": "In", "values": ["r1", "r2"]},
                    {"key": "gpu", "operator": "Exists"},
                ]
            }
        ),
    ),
    Case("valid-tier-zero", hn(tier=0)),
    Case("valid-tier-name", hn(tierName="leaf-switch")),
    Case("valid-dotted-name", hn("rack.a-1")),
    Case("valid-253-char-name", hn("a" * 253)),
    Case("valid-exact-63-chars", hn(members=[node("n" * 63)])),
    Case("valid-dotted-member", hn(members=[node("node-1.example.com")])),
    Case(
        "valid-labels-annotations",
        with_(
            hn(),
            "metadata",
            {
                "name": "parity",
                "labels": {
                    "volcano.sh/network-topology-source": "ufm",
                    "app.kubernetes.io/managed-by": "volcano-topology",
                },
                "annotations": {"volcano-topology.io/path": "spine-1/leaf-3", "Mixed.Case/Key": "v"},
            },
        ),
    ),
    Case("valid-status-conditions", status(conditions=[condition()], nodeCount=4), status=True),
    Case(
        "valid-status-fractional-time",
        status(conditions=[condition(lastTransitionTime="2026-11-23T10:00:00.123+01:00")]),
        status=True,
    ),
    Case("valid-status-observed-generation", status(conditions=[condition(observedGeneration=3)]), status=True),
    # ---- rejected by the API server (CRD schema, CEL, metadata) ----------------------
    Case("tier-missing", without(hn(), "spec.tier"), schema=False, rule="required", path="spec.tier"),
    Case("tier-negative", hn(tier=-1), schema=False, rule="minimum 0", path="spec.tier"),
    Case("tier-string", hn(tier="1"), schema=False, rule="type", path="spec.tier"),
    Case("tier-float", hn(tier=1.5), schema=False, rule="type", path="spec.tier"),
    Case("tier-name-too-long", hn(tierName="t" * 254), schema=False, rule="maxLength 253", path="spec.tierName"),
    Case("members-empty", hn(members=[]), schema=False, rule="minItems 1", path="spec.members"),
    Case(
        "member-type-unknown",
        hn(members=[{"type": "Pod", "selector": EXACT}]),
        schema=False,
        rule="enum",
        path="spec.members[0].type",
    ),
    Case(
        "member-type-missing",
        hn(members=[{"selector": EXACT}]),
        schema=False,
        rule="required",
        path="spec.members[0].type",
    ),
    Case(
        "selector-empty", selector(), schema=False, rule="CEL: one selector required", path="spec.members[0].selector"
    ),
    Case(
        "selector-exact-and-regex",
        selector(**EXACT, **REGEX),
        schema=False,
        rule="CEL: at most one selector",
        path="spec.members[0].selector",
    ),
    Case(
        "selector-exact-and-labels",
        selector(**EXACT, **LABELS),
        schema=False,
        rule="CEL: at most one selector",
        path="spec.members[0].selector",
    ),
    Case(
        "selector-all-three",
        selector(**EXACT, **REGEX, **LABELS),
        schema=False,
        rule="CEL: at most one selector",
        path="spec.members[0].selector",
    ),
    Case(
        "exact-name-uppercase",
        hn(members=[node("Node-1")]),
        schema=False,
        rule="pattern",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "exact-name-underscore",
        hn(members=[node("node_1")]),
        schema=False,
        rule="pattern",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "exact-name-empty",
        hn(members=[node("")]),
        schema=False,
        rule="minLength 1",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "exact-name-too-long",
        hn(members=[node("n" * 254)]),
        schema=False,
        rule="maxLength 253",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "exact-name-missing",
        selector(exactMatch={}),
        schema=False,
        rule="required",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "exact-match-not-object",
        selector(exactMatch="node-1"),
        schema=False,
        rule="type",
        path="spec.members[0].selector.exactMatch",
    ),
    Case(
        "regex-pattern-empty",
        regex(""),
        schema=False,
        rule="minLength 1",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "label-expression-no-operator",
        selector(labelMatch={"matchExpressions": [{"key": "gpu"}]}),
        schema=False,
        rule="required",
        path="spec.members[0].selector.labelMatch.matchExpressions[0].operator",
    ),
    Case(
        "label-match-value-not-string",
        selector(labelMatch={"matchLabels": {"rack": 1}}),
        schema=False,
        rule="type",
        path="spec.members[0].selector.labelMatch.matchLabels.rack",
    ),
    Case("unknown-spec-field", hn(memebrs=[node("node-1")]), schema=False, rule="unknown field", path="spec.memebrs"),
    Case("unknown-top-level-field", {**hn(), "extra": {}}, schema=False, rule="unknown field", path="extra"),
    Case("metadata-name-uppercase", hn("Spine-1"), schema=False, rule="DNS-1123 subdomain", path="metadata.name"),
    Case("metadata-name-too-long", hn("a" * 254), schema=False, rule="DNS-1123 subdomain", path="metadata.name"),
    Case(
        "metadata-name-missing",
        with_(hn(), "metadata", {}),
        schema=False,
        rule="metadata.name is required",
        path="metadata",
    ),
    Case(
        "label-value-invalid",
        with_(hn(), "metadata.labels", {"rack": "r 1"}),
        schema=False,
        rule="label values",
        path="metadata.labels",
    ),
    Case(
        "label-value-too-long",
        with_(hn(), "metadata.labels", {"rack": "r" * 64}),
        schema=False,
        rule="label values",
        path="metadata.labels",
    ),
    Case(
        "label-key-invalid",
        with_(hn(), "metadata.labels", {"a/b/c": "x"}),
        schema=False,
        rule="label keys",
        path="metadata.labels",
    ),
    Case(
        "annotation-key-invalid",
        with_(hn(), "metadata.annotations", {"bad key": "x"}),
        schema=False,
        rule="annotation keys",
        path="metadata.annotations",
    ),
    Case(
        "status-node-count-negative",
        status(nodeCount=-1),
        schema=False,
        rule="minimum 0",
        path="status.nodeCount",
        status=True,
    ),
    Case(
        "status-condition-status-unknown-value",
        status(conditions=[condition(status="Maybe")]),
        schema=False,
        rule="enum",
        path="status.conditions[0].status",
        status=True,
    ),
    Case(
        "status-condition-reason-pattern",
        status(conditions=[condition(reason="not ok!")]),
        schema=False,
        rule="pattern",
        path="status.conditions[0].reason",
        status=True,
    ),
    Case(
        "status-condition-reason-empty",
        status(conditions=[condition(reason="")]),
        schema=False,
        rule="minLength 1",
        path="status.conditions[0].reason",
        status=True,
    ),
    Case(
        "status-condition-no-time",
        status(conditions=[condition(lastTransitionTime=None)]),
        schema=False,
        rule="required",
        path="status.conditions[0].lastTransitionTime",
        status=True,
    ),
    Case(
        "status-condition-time-not-date",
        status(conditions=[condition(lastTransitionTime="yesterday")]),
        schema=False,
        rule="date-time",
        path="status.conditions[0].lastTransitionTime",
        status=True,
    ),
    Case(
        "status-condition-time-no-zone",
        status(conditions=[condition(lastTransitionTime="2026-11-23T10:00:00")]),
        schema=False,
        rule="date-time",
        path="status.conditions[0].lastTransitionTime",
        status=True,
    ),
    Case(
        "status-condition-time-bad-day",
        status(conditions=[condition(lastTransitionTime="2026-02-30T10:00:00Z")]),
        schema=False,
        rule="date-time",
        path="status.conditions[0].lastTransitionTime",
        status=True,
    ),
    Case(
        "status-condition-type-pattern",
        status(conditions=[condition(type="has space")]),
        schema=False,
        rule="pattern",
        path="status.conditions[0].type",
        status=True,
    ),
    Case(
        "status-condition-message-too-long",
        status(conditions=[condition(message="m" * 32769)]),
        schema=False,
        rule="maxLength 32768",
        path="status.conditions[0].message",
        status=True,
    ),
    Case(
        "status-unknown-field",
        status(nodecount=1),
        schema=False,
        rule="unknown field",
        path="status.nodecount",
        status=True,
    ),
    # ---- accepted by the API server, rejected by Volcano's admission policy ----------
    Case("no-members", without(hn(), "spec.members"), policy=False, rule="members required", path="spec.members"),
    Case("no-spec", without(hn(), "spec"), policy=False, rule="members required", path="spec.members"),
    Case(
        "member-without-selector",
        hn(members=[{"type": "Node"}]),
        policy=False,
        rule="one selector required",
        path="spec.members[0].selector",
    ),
    Case(
        "exact-name-64-chars",
        hn(members=[node("n" * 64)]),
        policy=False,
        rule="qualified name",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "exact-name-long-dns-label",
        hn(members=[node(("a" * 60) + ".example.com")]),
        policy=False,
        rule="qualified name",
        path="spec.members[0].selector.exactMatch.name",
    ),
    Case(
        "regex-unbalanced-parentheses",
        regex("gpu-(1"),
        policy=False,
        webhook=False,
        rule="balanced parentheses",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-escaped-parenthesis",
        regex(r"gpu\(1"),
        policy=False,
        rule="balanced parentheses",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-unbalanced-brackets",
        regex("gpu-[0-9"),
        policy=False,
        webhook=False,
        rule="balanced square brackets",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-escaped-bracket",
        regex(r"gpu\[1"),
        policy=False,
        rule="balanced square brackets",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-unbalanced-braces",
        regex("gpu{2"),
        policy=False,
        rule="balanced curly braces",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    # ---- accepted by the API server and the policy, rejected by Volcano's Go webhook --
    Case(
        "regex-lookahead",
        regex("(?=gpu)node"),
        webhook=False,
        rule="RE2 syntax",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-backreference",
        regex(r"(a)\1"),
        webhook=False,
        rule="RE2 syntax",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-close-before-open",
        regex(")node("),
        webhook=False,
        rule="RE2 syntax",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
    Case(
        "regex-bad-repeat",
        regex("node**"),
        webhook=False,
        rule="RE2 syntax",
        path="spec.members[0].selector.regexMatch.pattern",
    ),
]
