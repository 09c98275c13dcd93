"""A test provider that follows Nodes: one leaf of every Node carrying a label, rebuilt on each change."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.provider import Event, Provider, ProviderContext, Reply


class NodesSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    label: str = "vt-test/leaf"
    leaf: str = "nodes-leaf"


class NodesProvider(Provider):
    settings_model = NodesSettings
    settings: NodesSettings
    needs_nodes = True

    def __init__(self, settings: NodesSettings | None = None) -> None:
        super().__init__(settings or NodesSettings())
        self.snapshots = 0

    def leaf(self, nodes: Mapping[str, Mapping[str, str]]) -> list[HyperNode]:
        chosen = sorted(n for n, labels in nodes.items() if self.settings.label in labels)
        if not chosen:
            return []
        spec = HyperNodeSpec(tier=1, members=[Member.node(n) for n in chosen])
        return [HyperNode(metadata=ObjectMeta(name=self.settings.leaf), spec=spec)]

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        seen = 0
        while not ctx.stopping.is_set():
            seen = await ctx.cluster.nodes_changed(seen)
            assert ctx.cluster.nodes_synced()
            await events.put(Event.snapshot(self.leaf(ctx.cluster.nodes())))
            self.snapshots += 1

    def gauges(self) -> Mapping[str, float]:
        return {"snapshots_sent": self.snapshots}
