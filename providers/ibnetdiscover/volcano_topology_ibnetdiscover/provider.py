"""The ``ibnetdiscover`` provider: read a dump (file, command or URL), parse it, build the tree, every interval.

A scan is all or nothing: a dump that cannot be read, does not parse (a :class:`ParseError` names the
line) or does not build raises, and the :class:`~volcano_topology.sdk.scanning.ScanningProvider` keeps
the last good topology in the cluster and retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from volcano_topology.api import HyperNode
from volcano_topology.provider import Event, ProviderContext, Reply
from volcano_topology.sdk.scanning import ScanningProvider
from volcano_topology_ibnetdiscover import sources
from volcano_topology_ibnetdiscover.build import Layout, layout
from volcano_topology_ibnetdiscover.parse import Fabric, parse
from volcano_topology_ibnetdiscover.settings import IBNetDiscoverSettings

SHOWN = 10  # hosts or ports named in one log line


class IBNetDiscoverProvider(ScanningProvider):
    settings_model = IBNetDiscoverSettings
    settings: IBNetDiscoverSettings
    interval = 300.0

    def __init__(self, settings: IBNetDiscoverSettings) -> None:
        super().__init__(settings)
        self.layout: Layout | None = None  # of the last good scan
        self.fabric: Fabric | None = None
        self.hypernode_count = 0
        self.tiers = 0
        self._credentials: Mapping[str, bytes] = {}
        self._logger = logging.getLogger(__name__)
        self._reported: tuple[object, ...] | None = None

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        self._credentials = ctx.credentials
        self._logger = ctx.logger
        await super().start(events, replies, ctx)

    def read(self) -> bytes:
        s = self.settings
        if s.file is not None:
            return sources.read_file(s.file, s.max_bytes)
        if s.command is not None:
            return sources.run_command(s.command, s.timeout, s.max_bytes, s.accept_incomplete_discovery)
        assert s.url is not None  # the settings model insists on exactly one source
        return sources.fetch_url(
            s.url, timeout=s.timeout, max_bytes=s.max_bytes, verify=not s.insecure_skip_tls_verify,
            ca_file=s.ca_file, credentials=self._credentials,
        )  # fmt: skip

    def scan(self) -> list[HyperNode]:
        # Blocking (file, subprocess, HTTP), so the SDK runs it on a scan thread of its own.
        fabric = parse(self.read().decode("utf-8", "replace"))
        found = layout(fabric, self.settings.node_names, self.settings.options())
        hypernodes = found.tree.build()
        self.fabric, self.layout, self.hypernode_count = fabric, found, len(hypernodes)
        self.tiers = max((h.spec.tier for h in hypernodes if h.spec is not None), default=0)
        self._report(found, fabric)
        return hypernodes

    def gauges(self) -> Mapping[str, float]:
        found = self.layout
        if found is None:
            return {}
        # Tiers as written: a top switch with no node below it makes no HyperNode.
        return {**found.gauges(), "hypernodes": float(self.hypernode_count), "tiers": float(self.tiers)}

    def _report(self, found: Layout, fabric: Fabric) -> None:
        """Log what was left out, once each time it changes (not at every scan)."""
        state = (tuple(sorted(found.mapped.unmapped.items())), tuple(found.unnamed), len(fabric.ignored))
        if state == self._reported:
            return
        self._reported = state
        log = self._logger
        if found.mapped.unmapped:
            listed = sorted(found.mapped.unmapped.items())
            log.warning(
                "%d of %d hosts are unmapped and left out of the tree: %s%s", len(listed), len(found.homes),
                "; ".join(f"{host} ({why})" for host, why in listed[:SHOWN]), " ..." if len(listed) > SHOWN else "",
            )  # fmt: skip
        if found.unnamed:
            log.warning(
                "%d HCA port(s) have no usable node description, so their host is unknown and left out: %s%s",
                len(found.unnamed),
                "; ".join(f"{u.guid} ({u.description!r}) on {u.switch} port {u.port}" for u in found.unnamed[:SHOWN]),
                " ..." if len(found.unnamed) > SHOWN else "",
            )
        if fabric.ignored:
            shown = ", ".join(map(str, fabric.ignored[:SHOWN]))
            log.info("ignored %d line(s) that are not ibnetdiscover output (lines %s)", len(fabric.ignored), shown)
