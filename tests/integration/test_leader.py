"""Leader election on a real Lease: one leader at a time, even when the leader loses the API server."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

from kubernetes import client

from tests.faultproxy import FaultProxy, Rule
from tests.integration.conftest import cluster_hypernodes
from tests.integration.operator_harness import OperatorProcess, write_config
from tests.integration.test_operator import launch, operators  # noqa: F401 - fixture
from volcano_topology import kube
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.kube import ClusterClient
from volcano_topology.leader import LeaderElector


async def test_never_two_leaders_even_when_the_leader_is_cut_off(
    proxied_kubeconfig: str, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    direct = ClusterClient(hypernode_api, timeout=1.0)
    via_proxy = ClusterClient(kube.api_client(proxied_kubeconfig), timeout=1.0)
    timings = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.25, "request_timeout": 0.5}
    a = LeaderElector(via_proxy, "default", lease, "a", **timings)
    b = LeaderElector(direct, "default", lease, "b", **timings)
    tasks = [asyncio.create_task(a.run())]
    await asyncio.sleep(1.0)
    tasks.append(asyncio.create_task(b.run()))
    both, samples = 0, 0
    try:
        await asyncio.sleep(1.0)
        assert a.is_leader()
        assert not b.is_leader()
        faults.add(Rule(None, f"/leases/{lease}", status=503, reason="ServiceUnavailable", times=10_000))
        cut = time.monotonic()
        deposed_at = took_over_at = None
        while time.monotonic() - cut < 8:
            samples += 1
            both += a.is_leader() and b.is_leader()
            if deposed_at is None and not a.is_leader():
                deposed_at = time.monotonic() - cut
            if took_over_at is None and b.is_leader():
                took_over_at = time.monotonic() - cut
            await asyncio.sleep(0.02)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert both == 0, f"both were leader in {both} of {samples} samples"
    assert deposed_at is not None
    assert deposed_at <= 2.0 + 0.3, "the cut-off leader stops within its renew deadline"
    assert took_over_at is not None
    assert deposed_at < took_over_at <= 3.0 + 1.5, "the standby waits out the lease, then takes over"


def test_standby_takes_over_after_the_leader_is_killed(
    operators: list[OperatorProcess], control_plane: LocalControlPlane,  # noqa: F811
    hypernode_api: client.ApiClient, tmp_path: Path,
) -> None:  # fmt: skip
    election = {"enabled": True, "leaseName": f"vt-{uuid.uuid4().hex[:6]}", "namespace": "default",
                "leaseDuration": "4s", "renewDeadline": "3s", "retryPeriod": "500ms"}  # fmt: skip
    entry = {"source": "emulated", "interval": "1s", "config": {"modelFile": "tiny-8"}}
    config = write_config(tmp_path / "c.yaml", [entry], leaderElection=election, requestTimeout="800ms")
    a = launch(operators, control_plane, tmp_path, config=config, identity="operator-a")
    a.wait(lambda: a.metric("volcano_topology_leader") == 1, what="a leads")
    a.wait(lambda: len(cluster_hypernodes(hypernode_api, "emulated")) == 3, what="a wrote the tree")
    b = launch(operators, control_plane, tmp_path, config=config, identity="operator-b")
    b.wait(lambda: b.ready().get("ready") is True, what="the standby is ready (caches warm)")
    time.sleep(2)
    assert b.metric("volcano_topology_leader") == 0
    assert b.metric("volcano_topology_writes_total") == 0, "a standby never writes"

    assert a.process is not None
    a.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    b.wait(lambda: b.metric("volcano_topology_leader") == 1, within=20, what="b takes over")
    failover = time.monotonic() - killed
    assert failover <= 4.0 + 2.0, f"failover took {failover:.1f}s"

    entry["config"]["changes"] = [
        {"at": 0, "addSwitch": {"name": "leaf-2", "parents": ["spine-0"], "nodes": ["node9"]}}
    ]
    write_config(config, [entry], leaderElection=election, requestTimeout="800ms")
    b.wait(lambda: "leaf-2" in cluster_hypernodes(hypernode_api, "emulated"), what="the new leader writes")
    assert b.metric("volcano_topology_writes_total", verb="create") == 1, "only what changed; the rest matched"
    print(f"failover after SIGKILL: {failover:.1f}s (lease 4s)")
