"""Volcano's admission rules for HyperNodes, beyond what the CRD schema enforces.

Two sources, both applied by a cluster running Volcano:

- the ValidatingAdmissionPolicy ``hypernode-validation-policy`` (CEL), and
- the Go webhook ``validatehypernode.volcano.sh``, which additionally compiles
  ``regexMatch.pattern`` with Go's ``regexp`` (RE2 syntax). Python's ``re`` accepts
  patterns RE2 refuses (look-arounds, back-references), so RE2 itself checks them here.
"""

from __future__ import annotations

import re2

from volcano_topology import kubenames
from volcano_topology.api import HyperNode, MemberSelector
from volcano_topology.problems import Problem, join_path

# Rules only Volcano's Go webhook checks; its admission policy (CEL) does not.
WEBHOOK_ONLY_RULES = frozenset({"RE2 syntax"})

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors come back as exceptions; RE2 would also print them to stderr

_BALANCED = (("(", ")", "parentheses"), ("[", "]", "square brackets"), ("{", "}", "curly braces"))


def admission_problems(hypernode: HyperNode) -> list[Problem]:
    members = hypernode.members
    if not members:
        return [Problem("spec.members", "members required", "member must have at least one member", "admission")]
    problems: list[Problem] = []
    for index, member in enumerate(members):
        problems.extend(_selector_problems(member.selector, join_path("spec", "members", index, "selector")))
    return problems


def _selector_problems(selector: MemberSelector | None, path: str) -> list[Problem]:
    chosen = (
        [] if selector is None else [s for s in (selector.exact_match, selector.regex_match, selector.label_match) if s]
    )
    if not chosen:
        return [
            Problem(
                path,
                "one selector required",
                "member selector must have one of exactMatch, regexMatch, or labelMatch",
                "admission",
            )
        ]
    if len(chosen) > 1:
        return [
            Problem(
                path,
                "at most one selector",
                "cannot specify more than one selector type (exactMatch, regexMatch, labelMatch)",
                "admission",
            )
        ]
    assert selector is not None
    problems: list[Problem] = []
    if selector.exact_match is not None:
        name_path = f"{path}.exactMatch.name"
        name = selector.exact_match.name
        if name == "":
            problems.append(Problem(name_path, "name required", "member exactMatch name is required", "admission"))
        elif found := kubenames.qualified_name_problems(name):
            problems.append(
                Problem(
                    name_path,
                    "qualified name",
                    f"member exactMatch validate failed for {name!r}: {'; '.join(found)}",
                    "admission",
                )
            )
    if selector.regex_match is not None:
        problems.extend(regex_problems(selector.regex_match.pattern, f"{path}.regexMatch.pattern"))
    return problems


def regex_problems(pattern: str, path: str) -> list[Problem]:
    if pattern == "":
        return [Problem(path, "pattern required", "member regexMatch pattern is required", "admission")]
    problems: list[Problem] = []
    # The policy compares counts of opening and closing characters, escaped or not; so must we.
    for opening, closing, what in _BALANCED:
        if opening in pattern and pattern.count(opening) != pattern.count(closing):
            problems.append(
                Problem(
                    path, f"balanced {what}", f"member regexMatch pattern is invalid: unmatched {what}", "admission"
                )
            )
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        problems.append(
            Problem(
                path,
                "RE2 syntax",
                f"member regexMatch pattern {pattern!r} does not compile under RE2: {reason}",
                "admission",
            )
        )
    return problems
