"""Per-provider counters outlive a writer: a new term as leader or a restarted provider never resets /metrics."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from volcano_topology.config import parse_configuration
from volcano_topology.controller import ConfigSource, Controller
from volcano_topology.kube import HyperNodeClient
from volcano_topology.writer import ProviderStats, Writer


async def test_writers_sharing_the_stats_carry_the_counters_over() -> None:
    api = client.ApiClient(client.Configuration())
    shared: dict[str, ProviderStats] = {}
    first = Writer(HyperNodeClient(api), stats=shared)
    first.open("fabric").stats.writes["create"] += 3
    first.close()
    second = Writer(HyperNodeClient(api), stats=shared)
    assert second.open("fabric").stats.writes["create"] == 3
    assert second.open("other").stats.writes["create"] == 0
    second.close()
    assert Writer(HyperNodeClient(api)).open("fabric").stats.writes["create"] == 0, "a writer of its own starts at 0"


async def test_the_controller_gives_every_writer_it_makes_the_same_stats(tmp_path: Path) -> None:
    controller = Controller(client.ApiClient(client.Configuration()), ConfigSource.parse(str(tmp_path / "c"), None))
    config = parse_configuration("networkTopologyDiscovery: []\n")
    first, second = controller._writer_for(config), controller._writer_for(config)
    assert first.open("fabric").stats is second.open("fabric").stats
    first.close()
    second.close()
