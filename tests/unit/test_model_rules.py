"""Every parity case: the model reaches the expected verdict at each layer and names the rule and path."""

from __future__ import annotations

import pytest

from tests.parity_cases import CASES, Case
from volcano_topology.admission import WEBHOOK_ONLY_RULES
from volcano_topology.validation import Verdict, check_document


def layer_verdicts(verdict: Verdict) -> tuple[bool, bool, bool]:
    schema = verdict.schema_ok()
    policy = schema and not any(p.level == "admission" and p.rule not in WEBHOOK_ONLY_RULES for p in verdict.problems)
    webhook = schema and not any(p.rule in WEBHOOK_ONLY_RULES for p in verdict.problems)
    return schema, policy, webhook


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model_verdict_matches_case(case: Case) -> None:
    verdict = check_document(case.document)
    schema, policy, webhook = layer_verdicts(verdict)
    assert schema == case.schema, verdict.problems
    if case.schema:
        assert (policy, webhook) == (case.policy, case.webhook), verdict.problems
    assert verdict.ok == case.valid
    if not case.valid:
        assert any(case.rule in p.rule and p.path == case.path for p in verdict.problems), (
            f"expected rule {case.rule!r} at {case.path!r}, got {[str(p) for p in verdict.problems]}"
        )
        assert all(p.message for p in verdict.problems)


def test_corpus_covers_enough_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.valid for c in CASES) >= 10
    assert sum(not c.schema for c in CASES) >= 20
    assert sum(c.schema and not c.policy for c in CASES) >= 5
    assert sum(c.schema and c.policy and not c.webhook for c in CASES) >= 2
