"""A provider that emits a small tree and changes it over time, reading its replies."""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.provider import Event, Provider, ProviderContext, Reply


class ExampleSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    interval: float = Field(30.0, gt=0)
    leaves: int = Field(2, ge=1, le=100)
    nodes_per_leaf: int = Field(2, ge=1, le=1000)
    prefix: str = Field("example", pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


class ExampleProvider(Provider):
    settings_model = ExampleSettings
    settings: ExampleSettings

    def __init__(self, settings: ExampleSettings | None = None) -> None:
        super().__init__(settings or ExampleSettings())
        self.replies_seen: list[Reply] = []

    def leaf(self, index: int) -> HyperNode:
        p = self.settings.prefix
        nodes = [f"{p}-node-{index}-{n}" for n in range(self.settings.nodes_per_leaf)]
        return HyperNode(
            metadata=ObjectMeta(name=f"{p}-leaf-{index}"),
            spec=HyperNodeSpec(tier=1, tier_name="leaf", members=[Member.node(n) for n in nodes]),
        )

    def spine(self, leaves: int) -> HyperNode:
        p = self.settings.prefix
        members = [Member.hypernode(f"{p}-leaf-{i}") for i in range(leaves)]
        return HyperNode(
            metadata=ObjectMeta(name=f"{p}-spine"), spec=HyperNodeSpec(tier=2, tier_name="spine", members=members)
        )

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        reader = asyncio.create_task(self._read_replies(replies, ctx))
        try:
            count = self.settings.leaves
            for index in range(count):  # children first: leaves, then the spine that references them
                await events.put(Event.create(self.leaf(index)))
            await events.put(Event.create(self.spine(count)))
            growing = True
            while not ctx.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ctx.stopping.wait(), self.settings.interval)
                    break
                if growing:
                    await events.put(Event.create(self.leaf(count)))
                    count += 1
                    await events.put(Event.update(self.spine(count)))
                else:
                    count -= 1
                    await events.put(Event.update(self.spine(count)))
                    await events.put(Event.delete(self.leaf(count).name))
                growing = not growing
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_replies(self, replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        while True:
            reply = await replies.get()
            self.replies_seen.append(reply)
            ctx.logger.warning("%s was not applied after %d attempt(s): %s", reply.event, reply.attempts, reply.error)
