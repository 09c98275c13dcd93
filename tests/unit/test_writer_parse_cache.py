"""The writer validates an observed object once per resourceVersion, not on every LIST."""

from __future__ import annotations

from typing import Any

import pytest

from volcano_topology import plan, writer


class Listing:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def list(self) -> list[dict[str, Any]]:
        return self.items


def leaf(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode",
        "metadata": {"name": name, "resourceVersion": version},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": f"{name}-n"}}}]},
    }  # fmt: skip


async def test_only_new_or_changed_objects_are_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    original = plan.Observed.from_dict

    def counting(obj: Any) -> plan.Observed:
        parsed.append(obj["metadata"]["name"])
        return original(obj)

    monkeypatch.setattr(plan.Observed, "from_dict", counting)
    listing = Listing()
    w = writer.Writer(listing)  # type: ignore[arg-type]
    listing.items = [leaf("a", "1"), leaf("b", "1")]
    first = await w._observe()
    listing.items = [leaf("a", "1"), leaf("b", "2"), leaf("c", "1")]
    second = await w._observe()
    assert parsed == ["a", "b", "b", "c"]
    assert second["a"] is first["a"]
    assert second["b"].resource_version == "2"
    listing.items = [leaf("c", "1")]
    await w._observe()
    assert set(w._parsed) == {"c"}, "objects gone from the LIST are forgotten"


async def test_an_unchanged_object_of_a_new_snapshot_is_not_checked_again_a_changed_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.builders import leaf as desired_leaf
    from volcano_topology.api import ExactMatch, HyperNodeSpec, Member, MemberSelector, ObjectMeta
    from volcano_topology.api import HyperNode as Model
    from volcano_topology.provider import Event

    checked: list[str] = []
    original = writer.check_document

    def counting(document: Any, **options: Any) -> Any:
        checked.append(document["metadata"]["name"])
        return original(document, **options)

    monkeypatch.setattr(writer, "check_document", counting)
    w = writer.Writer(Listing(), writer.WriterSettings(dry_run=True))  # type: ignore[arg-type]
    channel = w.open("p")
    assert await w.process(channel, [Event.snapshot([desired_leaf("a", "n1"), desired_leaf("b", "n2")])])
    assert checked == ["a", "b"]
    assert await w.process(channel, [Event.snapshot([desired_leaf("a", "n1"), desired_leaf("b", "n3")])])
    assert checked == ["a", "b", "b"], "only the changed object is checked again"
    bad = Member.model_construct(
        type="Node", selector=MemberSelector.model_construct(exact_match=ExactMatch.model_construct(name="NOT_A_NODE"))
    )
    garbage = Model.model_construct(
        metadata=ObjectMeta(name="a"), spec=HyperNodeSpec.model_construct(tier=1, members=[bad])
    )
    assert not await w.process(channel, [Event.snapshot([garbage, desired_leaf("b", "n3")])])
    assert checked[-1] == "a" and channel.replies.get_nowait().error.reason == "Invalid"
