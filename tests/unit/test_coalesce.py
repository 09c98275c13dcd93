"""Coalescing: a SNAPSHOT supersedes what came before; the newest event per name wins."""

from __future__ import annotations

from tests.builders import leaf
from volcano_topology.provider import CONTRACT_VERSION, Event, EventType, contract_problem
from volcano_topology.writer import coalesce


def test_newest_event_per_name_wins_in_arrival_order() -> None:
    batch = coalesce([
        Event.create(leaf("a", "n1")), Event.create(leaf("b", "n2")), Event.delete("a"), Event.create(leaf("a", "n3")),
    ])  # fmt: skip
    assert [(e.type, e.target) for e in batch.singles] == [(EventType.CREATE, "b"), (EventType.CREATE, "a")]
    assert batch.singles[1].hypernode == leaf("a", "n3")
    assert batch.superseded == 2


def test_snapshot_supersedes_everything_before_it() -> None:
    later = Event.delete("x")
    batch = coalesce([Event.create(leaf("a", "n1")), Event.snapshot([leaf("a", "n1")]), Event.snapshot([]), later])
    assert batch.snapshot == Event.snapshot([])
    assert batch.singles == [later]
    assert batch.superseded == 2


def test_malformed_events_are_set_aside_with_a_reason() -> None:
    batch = coalesce([{"type": "CREATE"}, Event(EventType.CREATE), Event(EventType.DELETE), Event.snapshot(["x"])])  # type: ignore[list-item]
    assert [why for _, why in batch.malformed] == [
        "expected an Event, got dict",
        "CREATE needs a HyperNode, got NoneType",
        "DELETE needs the name of a HyperNode",
        "SNAPSHOT must hold HyperNode objects only",
    ]
    assert batch.singles == []
    assert batch.snapshot is None


def test_contract_versions() -> None:
    assert contract_problem(CONTRACT_VERSION) is None
    assert contract_problem("1.0") is None
    assert "built for provider contract 2.0" in str(contract_problem("2.0"))
    assert "built for provider contract 1.9" in str(contract_problem("1.9"))
    assert "not of the form MAJOR.MINOR" in str(contract_problem("latest"))
    assert "not of the form" in str(contract_problem(None))
