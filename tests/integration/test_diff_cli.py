"""`volcano-topology diff`: the writer's own plan against a real API server, writing nothing; exit 0/1 for CI."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from kubernetes import client
from volcano_topology_emulated.provider import EmulatedProvider

from tests.builders import leaf, parent
from tests.faultproxy import FaultProxy
from tests.integration.conftest import WriterFactory, cluster_hypernodes
from tests.terminal import run_on_terminal
from volcano_topology import ownership, registry
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.discover import discover_once
from volcano_topology.plan import Observed, with_ownership
from volcano_topology.provider import Event
from volcano_topology.views.diff import changes, render_diff

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "volcano_topology.cli"]
TINY = "{modelFile: tiny-8}"


def diff(control_plane: LocalControlPlane, *extra: str, config: str = TINY) -> subprocess.CompletedProcess[str]:
    command = [*CLI, "diff", "emulated", "--config", config, "--kubeconfig", str(control_plane.kubeconfig), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def tiny() -> dict[str, HyperNode]:
    provider = registry.instantiate(registry.load(["emulated"])[0]["emulated"], {"modelFile": "tiny-8"})
    assert isinstance(provider, EmulatedProvider)
    return asyncio.run(discover_once("emulated", provider, quiet=0.2)).hypernodes


async def write(make_writer: WriterFactory, hypernodes: list[HyperNode], provider: str = "emulated") -> None:
    writer = make_writer()
    channel = writer.open(provider)
    assert await writer.process(channel, [Event.snapshot(hypernodes)])


def test_diff_against_an_empty_cluster_creates_all_and_writes_nothing(
    control_plane: LocalControlPlane, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    done = diff(control_plane, "--color", "never")
    assert done.returncode == 1, done.stderr
    assert (
        done.stdout.splitlines()[-1]
        == "emulated: 3 to create, 0 to update, 0 to delete, 0 unchanged (3 writes in 2 wave(s))"
    )
    assert "+++ emulated: HyperNode/leaf-0 (create)" in done.stdout
    assert "+    volcano.sh/network-topology-source: emulated" in done.stdout
    assert "\x1b" not in done.stdout
    assert cluster_hypernodes(hypernode_api, "emulated") == {}  # nothing written
    assert "\r" not in done.stderr  # no progress line when piped


async def test_diff_agrees_with_the_writer(
    control_plane: LocalControlPlane, make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    desired = await asyncio.to_thread(tiny)
    await write(make_writer, list(desired.values()))
    same = await asyncio.to_thread(diff, control_plane)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout == "emulated: 0 to create, 0 to update, 0 to delete, 3 unchanged\n"

    # another tool's label on one object is not the provider's business: still no change
    objects = client.CustomObjectsApi(hypernode_api)
    await asyncio.to_thread(objects.patch_cluster_custom_object, GROUP, VERSION, PLURAL, "leaf-0",
                            {"metadata": {"labels": {"team": "ml"}}})  # fmt: skip
    assert (await asyncio.to_thread(diff, control_plane)).returncode == 0

    # the cluster drifts: leaf-1 loses a node, spine-0 is gone, an extra object is owned
    drifted = [desired["leaf-0"], leaf("leaf-1", "node5", "node6", "node7"), leaf("leaf-9", "node9")]
    await write(make_writer, drifted)
    before = cluster_hypernodes(hypernode_api, "emulated")
    changed = await asyncio.to_thread(diff, control_plane, "--color", "always")
    assert changed.returncode == 1
    plain = await asyncio.to_thread(diff, control_plane)
    lines = plain.stdout.splitlines()
    assert lines[-1].startswith("emulated: 1 to create, 1 to update, 1 to delete, 1 unchanged")
    assert "+++ emulated: HyperNode/spine-0 (create)" in lines
    assert "--- cluster: HyperNode/leaf-1 (update)" in lines
    assert "+        name: node8" in lines
    assert "--- cluster: HyperNode/leaf-9 (delete)" in lines
    assert "-        name: node9" in lines
    assert not any("team" in line for line in lines)
    assert "\x1b[32m+" in changed.stdout
    assert cluster_hypernodes(hypernode_api, "emulated") == before  # still nothing written


def test_diff_errors_exit_2(control_plane: LocalControlPlane, tmp_path: object) -> None:
    unknown = subprocess.run([*CLI, "diff", "no-such-provider", "--config", TINY], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert unknown.returncode == 2
    bad = diff(control_plane, config="{modelFile: no-such-model}")
    assert bad.returncode == 2
    assert "no-such-model" in bad.stderr
    unreachable = subprocess.run([*CLI, "diff", "emulated", "--config", TINY, "--kubeconfig", "/nonexistent"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
    assert unreachable.returncode == 2
    assert "cannot reach the cluster" in unreachable.stderr


def observed(hypernode: HyperNode, provider: str | None) -> Observed:
    obj = (with_ownership(hypernode, provider) if provider else hypernode).to_dict()
    if provider:
        manager = ownership.field_manager(provider)
        fields = {f"f:{k}": {} for k in ownership.ownership_labels(provider)}
        obj["metadata"]["managedFields"] = [{"manager": manager, "fieldsV1": {"f:metadata": {"f:labels": fields}}}]
    return Observed.from_dict(obj)


def test_conflicts_count_as_a_difference() -> None:
    desired = {"a": with_ownership(leaf("a", "n1"), "mine"), "s": with_ownership(parent("s", "a"), "mine")}
    cluster = {"a": observed(leaf("a", "n1"), "mine"), "s": observed(parent("s", "a"), "someone")}
    result = changes("mine", desired, cluster)
    text = render_diff(result)
    assert result.changed
    assert "conflict: HyperNode/s already exists and belongs to provider someone: never written" in text
    assert text.splitlines()[-1] == "mine: 0 to create, 0 to update, 0 to delete, 1 unchanged, 1 held by others"


def test_the_deletion_guard_is_mentioned() -> None:
    cluster = {n: observed(leaf(n, f"n-{n}"), "mine") for n in ("a", "b", "c")}
    result = changes("mine", {"a": with_ownership(leaf("a", "n-a"), "mine")}, cluster)
    assert "the operator would refuse this: the snapshot would delete 2 of 3" in render_diff(result)


def test_diff_shows_progress_on_a_terminal_only(control_plane: LocalControlPlane, faults: FaultProxy) -> None:
    command = [*CLI, "diff", "emulated", "--config", TINY, "--kubeconfig", str(control_plane.kubeconfig)]
    done, seen = run_on_terminal(command)
    assert done.returncode == 1
    assert b"\rdiscovering with emulated" in seen
    assert b"\r" not in done.stdout


def test_a_member_naming_nothing_is_a_refusal_as_in_the_writer() -> None:
    """The writer refuses a snapshot whose member names a HyperNode that exists nowhere: diff says so (exit 2)."""
    desired = {"s": with_ownership(parent("s", "a", "ghost"), "mine"), "a": with_ownership(leaf("a", "n1"), "mine")}
    result = changes("mine", desired, {})
    assert result.refusals == ["HyperNode/s: member HyperNode ghost does not exist"]
    assert "the operator would refuse this snapshot: HyperNode/s: member HyperNode ghost" in render_diff(result)
    # another owner's object of that name in the cluster is a valid member: no refusal
    held = changes("mine", desired, {"ghost": observed(leaf("ghost", "n9"), "someone")})
    assert held.refusals == []


def test_diff_exits_2_when_the_writer_would_refuse_the_snapshot(
    control_plane: LocalControlPlane, hypernode_api: client.ApiClient, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from volcano_topology import discover
    from volcano_topology.cli import main

    real = discover.discover_once

    async def dangling(*args: object, **kwargs: object) -> discover.Discovery:
        found = await real(*args, **kwargs)  # type: ignore[arg-type]
        found.hypernodes["top"] = with_ownership(parent("top", "spine-0", "nowhere", tier=3), "emulated")
        return found

    monkeypatch.setattr(discover, "discover_once", dangling)
    code = main(["diff", "emulated", "--config", TINY, "--kubeconfig", str(control_plane.kubeconfig)])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "emulated: HyperNode/top: member HyperNode nowhere does not exist" in err
    assert "the operator would refuse" in out.splitlines()[-1]
    assert cluster_hypernodes(hypernode_api, "emulated") == {}  # nothing written
