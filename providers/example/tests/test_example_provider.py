"""The example provider emits children before parents, changes one leaf per interval, and reads replies."""

from __future__ import annotations

import asyncio
import logging

import pytest
from volcano_topology_example.provider import ExampleProvider, ExampleSettings

from volcano_topology.provider import ApplyError, Event, EventType, ProviderContext, Reply
from volcano_topology.runner import NoSecrets, StaticCluster


async def test_emits_tree_then_grows_and_shrinks() -> None:
    provider = ExampleProvider(ExampleSettings(interval=0.05, leaves=2, nodes_per_leaf=1, prefix="ex"))
    events: asyncio.Queue[Event] = asyncio.Queue()
    replies: asyncio.Queue[Reply] = asyncio.Queue()
    ctx = ProviderContext("example", logging.getLogger("example"), StaticCluster(), NoSecrets())  # type: ignore[arg-type]
    task = asyncio.create_task(provider.start(events, replies, ctx))
    await replies.put(Reply(Event.delete("ex-leaf-9"), ApplyError("refused"), 1))
    await asyncio.sleep(0.18)
    ctx.stopping.set()
    await asyncio.wait_for(task, 2)
    seen = []
    while not events.empty():
        event = events.get_nowait()
        seen.append((event.type, event.target))
    assert seen[:5] == [
        (EventType.CREATE, "ex-leaf-0"),
        (EventType.CREATE, "ex-leaf-1"),
        (EventType.CREATE, "ex-spine"),
        (EventType.CREATE, "ex-leaf-2"),  # grow: the new leaf first...
        (EventType.UPDATE, "ex-spine"),  # ...then the parent that references it
    ]
    assert seen[5:7] == [(EventType.UPDATE, "ex-spine"), (EventType.DELETE, "ex-leaf-2")]  # shrink: parent first
    assert len(provider.replies_seen) == 1


def test_settings_use_camel_case_and_refuse_unknown_keys() -> None:
    assert ExampleSettings.model_validate({"nodesPerLeaf": 3}).nodes_per_leaf == 3
    with pytest.raises(ValueError, match="nodes"):
        ExampleSettings.model_validate({"nodes": 3})
