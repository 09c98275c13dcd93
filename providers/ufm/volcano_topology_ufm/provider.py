"""The ``ufm`` provider: a :class:`ScanningProvider` whose blocking ``scan()`` asks UFM and builds the tree.

Each scan: read the credentials (``ctx.credentials``, else ``credentialsDir``), GET ports,
links and systems, parse, check the answer is whole, map host names to node names, build
a strict tree. Anything wrong raises, so ScanningProvider keeps the last good topology,
counts the failure and backs off. Nothing is cached across scans except the last good
scan's host count (for ``maxHostDropFraction``) and the unmapped hosts last reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import ClassVar

from volcano_topology.api import HyperNode
from volcano_topology.provider import Event, ProviderContext, Reply
from volcano_topology.sdk.scanning import ScanningProvider
from volcano_topology_ufm.build import build_tree, check_host_drop
from volcano_topology_ufm.client import UFMClient, make_auth, read_credentials
from volcano_topology_ufm.parse import check_complete, parse_fabric
from volcano_topology_ufm.settings import UFMSettings

log = logging.getLogger(__name__)
_LISTED = 20  # unmapped hosts named in one log line


class UFMProvider(ScanningProvider):
    settings_model: ClassVar[type[UFMSettings]] = UFMSettings
    settings: UFMSettings
    interval: ClassVar[float] = 600.0  # Volcano's examples use 10m; ``interval`` in configuration overrides it

    def __init__(self, settings: UFMSettings) -> None:
        super().__init__(settings)
        self.log = log
        self._credentials: Mapping[str, bytes] = {}
        self._stopping = threading.Event()  # wakes a scan thread waiting to retry
        self._lock = threading.Lock()
        self._last_good_hosts: int | None = None
        self._reported_unmapped: dict[str, str] | None = None
        self._figures: dict[str, float] = {"unmapped_hosts": 0.0}
        self.client = UFMClient(settings, logger=self.log, stopping=self._stopping)

    def __repr__(self) -> str:
        return f"UFMProvider(endpoint={self.settings.base_url!r})"

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        self.log = ctx.logger
        self.client.log = ctx.logger
        # Kept by this instance only: a Secret change restarts the provider with a new one.
        self._credentials = ctx.credentials
        self._stopping = threading.Event()  # a new one per start: a restarted instance must wait again
        self.client.stopping = self._stopping
        if self.settings.base_url.lower().startswith("http://"):
            self.log.warning(
                "endpoint is plain http://: the UFM credentials go over the network unencrypted, readable by "
                "anyone on the path; use https:// (the default when the endpoint has no scheme)"
            )
        if self.settings.insecure_skip_verify:
            self.log.warning(
                "insecureSkipVerify is set: UFM's TLS certificate is NOT verified, so anyone on the path can read "
                "the credentials; use caBundle instead in production"
            )
        watcher = asyncio.create_task(self._relay_stop(ctx))
        try:
            await super().start(events, replies, ctx)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._stopping.set()

    async def _relay_stop(self, ctx: ProviderContext) -> None:
        await ctx.stopping.wait()
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        self.client.close()

    def gauges(self) -> Mapping[str, float]:
        """Exported by the operator as ``volcano_topology_provider_<key>{provider=...}``."""
        with self._lock:
            return {**self._figures, "scan_failures": float(self.stats.failures)}

    def scan(self) -> list[HyperNode]:
        settings = self.settings
        auth = make_auth(settings, read_credentials(settings, self._credentials))
        answers = self.client.fetch(auth)
        fabric = parse_fabric(answers.ports, answers.links, answers.systems)
        check_complete(fabric)
        built = build_tree(fabric, settings)
        self._report(built.hosts.unmapped)
        with self._lock:
            previous = self._last_good_hosts
        check_host_drop(previous, built.node_count, settings.max_host_drop_fraction)
        hypernodes = built.tree.build()  # raises TreeError: the last good topology stays
        if not hypernodes:
            raise ValueError("no host could be mapped to a node name: nothing to write (see nodeNames)")
        with self._lock:
            self._last_good_hosts = built.node_count
            self._figures = {
                "unmapped_hosts": float(len(built.hosts.unmapped)),
                "mapped_hosts": float(built.node_count),
                "excluded_hosts": float(len(built.hosts.excluded)),
                "leaf_switches": float(len(built.leaves)),
            }
        self.log.info(
            "UFM: %d hosts on %d leaf switches, %d HyperNodes (%d hosts unmapped, %d excluded)",
            built.node_count, len(built.leaves), len(hypernodes), len(built.hosts.unmapped),
            len(built.hosts.excluded),
        )  # fmt: skip
        return hypernodes

    def _report(self, unmapped: Mapping[str, str]) -> None:
        """Log the unmapped hosts, with reasons, once each time the set (or a reason) changes."""
        with self._lock:
            if self._reported_unmapped == dict(unmapped):
                return
            self._reported_unmapped = dict(unmapped)
            self._figures["unmapped_hosts"] = float(len(unmapped))
        if not unmapped:
            self.log.info("UFM: every host maps to a node name now")
            return
        listed = "; ".join(f"{host}: {why}" for host, why in sorted(unmapped.items())[:_LISTED])
        more = f"; and {len(unmapped) - _LISTED} more" if len(unmapped) > _LISTED else ""
        self.log.warning("UFM: %d host(s) not mapped to a node name, left out: %s%s", len(unmapped), listed, more)
