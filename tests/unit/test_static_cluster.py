"""The fixed Node view providers get offline: synced at once, generation 1, never changing."""

from __future__ import annotations

import asyncio

import pytest

from volcano_topology.runner import StaticCluster


async def test_a_fixed_view_is_synced_generation_one_and_never_changes() -> None:
    for source in ({"n1": {"rack": "a"}}, lambda: {"n1": {"rack": "a"}}):
        view = StaticCluster(source)
        assert view.nodes_synced()
        assert dict(view.nodes()) == {"n1": {"rack": "a"}}
        assert await view.nodes_changed(0) == 1
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(view.nodes_changed(1), 0.2)
