"""`discover` shows the provider's own exception and traceback, at once, instead of waiting out the timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from volcano_topology.discover import DiscoveryError, discover_once
from volcano_topology.sdk import ScanningProvider, TreeBuilder, simple_provider

PROVIDERS = """
import asyncio

from volcano_topology import Event, Provider, ProviderContext, Reply, ScanningProvider, TreeBuilder


def fetch_racks() -> list[str]:
    raise ConnectionError("fabric manager at https://fm.example.com refused the connection")


class Broken(Provider):
    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        fetch_racks()


class BrokenScan(ScanningProvider):
    def scan(self) -> TreeBuilder:
        fetch_racks()
        return TreeBuilder()


class Conflicting(ScanningProvider):
    def scan(self) -> TreeBuilder:
        tree = TreeBuilder().switch("row")
        for rack in ("rack-1", "rack-2"):
            tree.switch(rack, parents=["row"]).attach(rack, "node-1")
        return tree


class Silent(Provider):
    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        return None


class BadInit(Provider):
    def __init__(self, settings: object = None) -> None:
        raise ValueError("no endpoint configured")

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        pass
"""


@pytest.fixture(scope="module")
def provider_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The providers above, laid out as ``pip install --target`` would (a module plus its dist-info)."""
    target = tmp_path_factory.mktemp("provider-path")
    (target / "broken_providers.py").write_text(textwrap.dedent(PROVIDERS))
    dist = target / "broken_providers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-providers\nVersion: 0.1\n")
    names = ["Broken", "BrokenScan", "Conflicting", "Silent", "BadInit"]
    entry_points = [f"{name.lower()} = broken_providers:{name}" for name in names]
    (dist / "entry_points.txt").write_text("[volcano_topology.providers]\n" + "\n".join(entry_points) + "\n")
    return target


def discover(provider_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "volcano_topology.cli", "discover", source, "--provider-path", str(provider_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("source", ["broken", "brokenscan"])
def test_a_failing_provider_prints_its_exception_and_traceback_at_once(provider_path: Path, source: str) -> None:
    started = time.monotonic()
    result = discover(provider_path, source)
    assert time.monotonic() - started < 15, "discover waited out its 30 s timeout"
    assert result.returncode == 1
    assert "sent nothing" not in result.stderr
    assert "Traceback (most recent call last):" in result.stderr
    assert 'broken_providers.py", line 8, in fetch_racks' in result.stderr
    assert result.stderr.rstrip().endswith(
        "ConnectionError: fabric manager at https://fm.example.com refused the connection"
    )


def test_a_strict_tree_error_is_printed_naming_the_node(provider_path: Path) -> None:
    result = discover(provider_path, "conflicting")
    assert result.returncode == 1
    assert (
        "error: provider conflicting: scan failed: TreeError: node 'node-1': attached to switches rack-1, rack-2, "
        "which are not declared rails of one another"
    ) in result.stderr


def test_a_provider_constructor_that_raises_is_shown_with_its_traceback(provider_path: Path) -> None:
    result = discover(provider_path, "badinit")
    assert result.returncode == 1
    assert "error: provider badinit: constructing broken_providers:BadInit raised:" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: no endpoint configured")


async def test_a_provider_that_returns_without_sending_anything_ends_the_run_at_once() -> None:
    from volcano_topology import Provider

    class Silent(Provider):
        async def start(self, *_: object) -> None:
            return None

    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="start\\(\\) returned without sending anything"):
        await discover_once("silent", Silent(), within=10)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_scan_error_is_the_provider_error(asynchronous: bool) -> None:
    problem = OSError("vendor API down")

    def racks() -> TreeBuilder:
        raise problem

    async def racks_async() -> TreeBuilder:
        raise problem

    provider = simple_provider("racks", racks_async if asynchronous else racks)()
    with pytest.raises(DiscoveryError) as raised:
        await discover_once("racks", provider, within=10)
    assert raised.value.provider_error is problem
    assert str(raised.value) == "provider racks: scan failed: OSError: vendor API down"


async def test_a_scan_that_succeeds_is_unchanged_by_the_recording() -> None:
    class Racks(ScanningProvider):
        async def scan(self) -> TreeBuilder:
            return TreeBuilder().switch("rack-1").attach("rack-1", "n1")

    found = await discover_once("racks", Racks(), within=10)
    assert list(found.hypernodes) == ["rack-1"]
    assert found.problems == []
