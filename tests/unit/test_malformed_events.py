"""Garbage from a provider is refused with a reason, never a crash of the writer or of the log line naming it."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from volcano_topology.api import HyperNode
from volcano_topology.kube import HyperNodeClient
from volcano_topology.provider import Event, EventType
from volcano_topology.writer import Writer


def test_an_event_carrying_a_dict_is_still_named_in_logs() -> None:
    garbage: Any = {"metadata": {"name": "leaf-7"}}
    assert str(Event(EventType.CREATE, hypernode=garbage)) == "CREATE leaf-7"
    assert str(Event(EventType.UPDATE, hypernode=42)) == "UPDATE ?"  # type: ignore[arg-type]
    assert str(Event(EventType.SNAPSHOT, hypernodes=7)) == "SNAPSHOT (malformed)"  # type: ignore[arg-type]


def test_metadata_assigned_after_construction_is_a_problem_naming_the_rule_not_an_exception() -> None:
    writer = Writer(HyperNodeClient(client.ApiClient(client.Configuration())))
    channel = writer.open("fabric")
    hypernode = HyperNode.model_validate({
        "metadata": {"name": "ok"},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": "n1"}}}]},
    })  # fmt: skip
    hypernode.metadata.name = "Bad_Name"  # pydantic does not validate assignment
    prepared, problems = writer._prepare(channel, hypernode)
    writer.close()
    assert prepared is None
    assert any("Bad_Name" in str(p) and "DNS-1123" in str(p) for p in problems), problems
