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
