"""volcano_topology.testing: the pytest plugin's control plane, offline and on-cluster runs, strict-tree checks."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.provider import Event, Provider, ProviderContext, Reply, TopologyViolation
from volcano_topology.testing import (
    ControlPlaneUnavailable,
    apply_provider,
    assert_no_problems,
    assert_strict_tree,
    discover_provider,
    run_offline,
    run_on_cluster,
    start_control_plane,
)


def leaf(name: str, *nodes: str) -> HyperNode:
    return HyperNode(
        metadata=ObjectMeta(name=name), spec=HyperNodeSpec(tier=1, members=[Member.node(n) for n in nodes])
    )


class TwoHomes(Provider):
    """Puts node-b in two leaves: not a strict tree."""

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        await events.put(Event.snapshot([leaf("kit-a", "node-a", "node-b"), leaf("kit-b", "node-b")]))
        await ctx.stopping.wait()


class Raises(Provider):
    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        raise RuntimeError("vendor API down")


def test_offline_reports_what_the_writer_would_refuse() -> None:
    result = run_offline(TwoHomes(), "two-homes")
    assert [e.type for e in result.events] == ["SNAPSHOT"]
    assert result.names == ["kit-a", "kit-b"]
    assert any("node-b" in str(p) for p in result.problems)
    with pytest.raises(AssertionError, match="node-b"):
        assert_no_problems(result)
    with pytest.raises(AssertionError, match=r"not a strict tree:\n .*node-b"):
        assert_strict_tree(result)


async def test_offline_async_form_and_a_strict_tree_passes() -> None:
    class Good(TwoHomes):
        async def start(
            self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext
        ) -> None:
            await events.put(Event.create(leaf("kit-c", "node-c")))
            await ctx.stopping.wait()

    result = await discover_provider(Good(), "good", quiet=0.2)
    assert [str(e) for e in result.events] == ["CREATE kit-c"]
    assert_strict_tree(result.hypernodes)
    assert_no_problems(result)


async def test_cluster_run_returns_the_replies_and_writes_nothing_of_a_refused_snapshot(
    vt_control_plane: LocalControlPlane,
) -> None:
    result = await apply_provider(vt_control_plane, TwoHomes(), "two-homes")
    assert result.objects == {}
    assert result.replies, "a refused snapshot is replied to"
    assert all(isinstance(r.error, TopologyViolation) for r in result.replies)
    with pytest.raises(AssertionError, match="TopologyViolation"):
        assert_no_problems(result)


async def test_cluster_run_of_a_failing_provider_times_out_naming_the_failure(vt_kubeconfig: str) -> None:
    with pytest.raises(TimeoutError, match="RuntimeError: vendor API down"):
        await apply_provider(vt_kubeconfig, Raises(), "raises", within=1.5)


class FromContext(Provider):
    """One leaf of the nodes it is shown, named after its credentials and interval."""

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        name = f"{ctx.credentials['site'].decode()}-{ctx.interval:g}s"
        await events.put(Event.snapshot([leaf(name, *sorted(ctx.cluster.nodes()))]))
        await ctx.stopping.wait()


def test_cluster_run_gives_the_provider_nodes_credentials_and_interval(vt_control_plane: LocalControlPlane) -> None:
    result = run_on_cluster(
        vt_control_plane, FromContext(), "from-context", nodes={"gpu-1": {}, "gpu-0": {}},
        credentials={"site": b"lab"}, interval=30.0, keep=True,
    )  # fmt: skip
    assert result.names == ["lab-30s"]
    assert result.members("lab-30s") == ["gpu-0", "gpu-1"]
    assert_no_problems(result)
    # keep=True left it there; the next run of the same source starts from a clean slate.
    again = run_on_cluster(vt_control_plane, Raises(), "from-context", until=lambda owned: True, settle=0.1)
    assert again.objects == {}


def test_missing_binaries_name_the_build_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("VOLCANO_TOPOLOGY_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ControlPlaneUnavailable, match="volcano-topology control-plane build"):
        start_control_plane(tmp_path / "plane")


def test_the_plugin_is_registered_and_its_fixture_fails_fast_without_binaries(tmp_path: Path) -> None:
    """A vendor's own test directory (no conftest) gets the fixture from the entry point."""
    (tmp_path / "test_vendor.py").write_text(
        textwrap.dedent("""
            def test_uses_the_kit(vt_control_plane):
                pass
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    env["VOLCANO_TOPOLOGY_CACHE"] = str(tmp_path / "empty-cache")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "volcano-topology control-plane build" in done.stdout
    assert "fixture 'vt_control_plane' not found" not in done.stdout


def test_the_guide_example_runs_as_written(
    vt_control_plane: LocalControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "write-a-provider.md"
    match = re.search(r"<!-- test-kit -->\n```python\n(.*?)```", guide.read_text(), re.DOTALL)
    assert match, "the test-kit example is missing from the guide"
    monkeypatch.syspath_prepend(str(guide.parents[1] / "providers" / "example"))
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), "test-kit example", "exec"), namespace)
    namespace["test_offline"]()
    namespace["test_on_a_real_api_server"](vt_control_plane)


def test_the_plugin_loads_without_importing_the_kubernetes_client() -> None:
    """Every pytest run where volcano-topology is installed loads the plugin: it stays light until used."""
    code = "import sys, volcano_topology.testing.plugin; print(sorted(m for m in sys.modules if m.startswith('kube')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.strip() == "[]"
