"""A test provider: emits the HyperNodes given in its config; can crash, count its starts, and show a credential."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from volcano_topology.api import HyperNode
from volcano_topology.provider import Event, ProviderContext, Reply
from volcano_topology.sdk import ScanningProvider


class StaticSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    hypernodes: list[dict[str, Any]] = []
    crash: bool = False
    starts_file: str | None = None
    credential_label: str | None = None  # put this credential's value in a label of every HyperNode


class StaticProvider(ScanningProvider):
    settings_model = StaticSettings
    settings: StaticSettings
    interval = 0.5

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        self.ctx = ctx
        if self.settings.starts_file:
            with Path(self.settings.starts_file).open("a") as log:  # noqa: ASYNC230 - a test's tiny counter file
                log.write("start\n")
        if self.settings.crash:
            raise RuntimeError("static provider configured to crash")
        await super().start(events, replies, ctx)

    def scan(self) -> list[HyperNode]:
        found = [HyperNode.model_validate(h) for h in self.settings.hypernodes]
        if self.settings.credential_label:
            value = self.ctx.credentials[self.settings.credential_label].decode()
            for hypernode in found:
                hypernode.metadata.labels = {**(hypernode.metadata.labels or {}), "credential": value}
        return found
