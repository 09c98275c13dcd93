"""Check HyperNode documents offline with the rules the API server and Volcano apply."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from volcano_topology.admission import admission_problems
from volcano_topology.api import API_VERSION, KIND, HyperNode
from volcano_topology.problems import Problem, join_path


@dataclass
class Verdict:
    hypernode: HyperNode | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def schema_ok(self) -> bool:
        """What the API server alone would decide (no Volcano admission installed)."""
        return not any(p.level == "schema" for p in self.problems)


def check_document(document: Any, *, admission: bool = True) -> Verdict:
    """Schema rules first (as the API server orders them), then Volcano's admission rules."""
    if not isinstance(document, dict):
        return Verdict(None, [Problem("(document)", "object", "a HyperNode document must be a mapping", "schema")])
    problems = [
        Problem(key, "required", f"{key} is required (expected {expected!r})", "schema")
        for key, expected in (("apiVersion", API_VERSION), ("kind", KIND))
        if key not in document
    ]
    try:
        hypernode = HyperNode.model_validate(document)
    except ValidationError as exc:
        return Verdict(None, problems + [schema_problem(error) for error in exc.errors()])
    if admission:
        problems.extend(admission_problems(hypernode))
    return Verdict(hypernode, problems)


def schema_problem(error: ErrorDetails) -> Problem:
    parts = [p for p in error["loc"] if p != "[key]"]
    path = join_path(*parts) or "(document)"
    ctx = error.get("ctx", {})
    return Problem(path, _rule(error["type"], ctx), error["msg"], "schema")


def _rule(kind: str, ctx: dict[str, Any]) -> str:
    if "rule" in ctx:
        return str(ctx["rule"])
    rules = {
        "missing": "required",
        "extra_forbidden": "unknown field",
        "string_too_long": f"maxLength {ctx.get('max_length')}",
        "string_too_short": f"minLength {ctx.get('min_length')}",
        "string_pattern_mismatch": f"pattern {ctx.get('pattern')}",
        "too_short": f"minItems {ctx.get('min_length')}",
        "greater_than_equal": f"minimum {ctx.get('ge')}",
        "less_than_equal": f"maximum {ctx.get('le')}",
        "literal_error": f"enum {ctx.get('expected')}",
    }
    return rules.get(kind, f"type ({kind})")


def load_documents(text: str) -> Iterator[Any]:
    """YAML documents of a stream, skipping empty ones and unwrapping ``kind: List``."""
    for document in yaml.safe_load_all(text):
        if document is None:
            continue
        if isinstance(document, dict) and document.get("kind") in ("List", "HyperNodeList"):
            yield from document.get("items") or []
        else:
            yield document


def describe(document: Any) -> str:
    if isinstance(document, dict):
        name = (document.get("metadata") or {}).get("name") if isinstance(document.get("metadata"), dict) else None
        if name:
            return f"HyperNode {name}"
    return "HyperNode (unnamed)"
