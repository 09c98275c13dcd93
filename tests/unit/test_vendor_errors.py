"""Errors a vendor meets in its own code name the value and the rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from volcano_topology import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.validation import check_document


def test_an_invalid_hypernode_name_names_the_value_and_the_rule() -> None:
    with pytest.raises(ValidationError) as raised:
        ObjectMeta(name="Bad_Name!")
    [error] = raised.value.errors()
    assert error["loc"] == ("name",)
    assert error["msg"].startswith("'Bad_Name!' is not a valid HyperNode name: a lowercase RFC 1123 subdomain")


def test_an_invalid_member_name_names_the_value_and_the_rule_not_a_regex() -> None:
    with pytest.raises(ValidationError) as raised:
        Member.node("Bad_Node!")
    [error] = raised.value.errors()
    assert error["msg"].startswith("'Bad_Node!' is not a valid member name (a Node or HyperNode name): a lowercase")
    assert "^[a-z0-9]" not in error["msg"]


def test_a_member_name_checked_as_a_document_keeps_its_path_and_pattern_rule() -> None:
    document = HyperNode(metadata=ObjectMeta(name="leaf"), spec=HyperNodeSpec(tier=1, members=[Member.node("n1")]))
    raw = document.to_dict()
    raw["spec"]["members"][0]["selector"]["exactMatch"]["name"] = "N_1"
    [problem] = check_document(raw).problems
    assert problem.path == "spec.members[0].selector.exactMatch.name"
    assert problem.rule.startswith("pattern ^[a-z0-9]")
    assert problem.message.startswith("'N_1' is not a valid member name")
