"""Host name -> node name mapping shared by the fabric providers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from volcano_topology.sdk.hostnames import NodeNameMapping


def test_host_names_are_lowercased_by_default_and_kept_as_given_with_preserve() -> None:
    assert NodeNameMapping().mapper().map("SAT111092710053") == "sat111092710053"
    assert NodeNameMapping(case="preserve").mapper().map("SAT111092710053") is None  # not a valid node name


def test_a_regex_and_template_rename_hosts_and_a_miss_is_unmapped_with_the_reason() -> None:
    mapper = NodeNameMapping.model_validate(
        {"regex": r"(?P<site>[a-z]+)(?P<n>\d+)\.cluster", "template": "{site}-gpu-{n}"}
    ).mapper()
    assert mapper.map("LUNA0001.cluster") == "luna-gpu-0001"
    name, why = mapper.explain("mgmt.example")
    assert name is None
    assert why is not None
    assert "nodeNames.regex" in why


def test_excluded_hosts_are_neither_mapped_nor_unmapped() -> None:
    mapped = NodeNameMapping(exclude=["ufm-.*"]).mapper().map_all(["ufm-1", "gpu-1"])
    assert mapped.nodes == {"gpu-1": "gpu-1"}
    assert mapped.unmapped == {}
    assert mapped.excluded == {"ufm-1"}


def test_a_result_that_is_no_valid_node_name_is_unmapped() -> None:
    mapped = NodeNameMapping().mapper().map_all(["MT4123 ConnectX6   Mellanox Technologies"])
    assert mapped.nodes == {}
    assert "not a valid node name" in mapped.unmapped["MT4123 ConnectX6   Mellanox Technologies"]


def test_two_hosts_mapping_to_one_node_name_are_both_unmapped() -> None:
    mapped = NodeNameMapping().mapper().map_all(["GPU-1", "gpu-1", "gpu-2"])
    assert mapped.nodes == {"gpu-2": "gpu-2"}
    assert set(mapped.unmapped) == {"GPU-1", "gpu-1"}
    assert "as gpu-1 does" in mapped.unmapped["GPU-1"]


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"regex": "(unclosed"}, "regex"),
        ({"exclude": ["[z-a]"]}, "exclude"),
        ({"regex": "(?P<a>x)", "template": "{b}"}, "template"),
        ({"template": "{host"}, "template"),
        ({"cases": "lower"}, "cases"),
    ],
)
def test_bad_mapping_settings_are_refused_naming_the_field(block: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NodeNameMapping.model_validate(block)
    assert field in str(caught.value)


@given(st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True), max_size=30), st.randoms())
def test_map_all_gives_the_same_answer_whatever_the_order(hosts: list[str], rnd: random.Random) -> None:
    mapper = NodeNameMapping().mapper()
    shuffled = hosts[:]
    rnd.shuffle(shuffled)
    first, second = mapper.map_all(hosts), mapper.map_all(shuffled)
    assert (first.nodes, first.unmapped, first.excluded) == (second.nodes, second.unmapped, second.excluded)
    assert len(set(first.nodes.values())) == len(first.nodes)  # never two hosts on one node
