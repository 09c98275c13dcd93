"""Lease renewal and API calls keep running while blocking work hangs elsewhere in the process.

Hung blocking scans and a default executor full of blocking jobs must not delay a renewal
or a HyperNode request; and when the election loop itself stops completing attempts,
``/healthz`` says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.faultproxy import FaultProxy, Rule
from volcano_topology import kube
from volcano_topology.controller import ConfigSource, Controller
from volcano_topology.controlplane.cluster import free_port
from volcano_topology.kube import ClusterClient, HyperNodeClient
from volcano_topology.leader import LeaderElector
from volcano_topology.observability import HealthServer
from volcano_topology.provider import Event, ProviderContext, Reply
from volcano_topology.runner import NoSecrets, StaticCluster
from volcano_topology.sdk import ScanningProvider

HUNG_SCANS = 10


def default_executor_threads() -> int:
    return ThreadPoolExecutor()._max_workers  # what asyncio's default executor gets on this machine


async def test_lease_renewals_and_requests_go_on_while_scans_hang_and_the_default_executor_is_full(
    hypernode_api: client.ApiClient,
) -> None:
    release = threading.Event()
    loop = asyncio.get_running_loop()
    blockers = [loop.run_in_executor(None, release.wait) for _ in range(2 * default_executor_threads())]

    class Hanging(ScanningProvider):
        scan_timeout = 0.2
        initial_backoff = 0.01
        max_scan_threads = HUNG_SCANS

        def scan(self) -> list[Any]:
            release.wait()  # a vendor API that never answers
            return []

    provider = Hanging()
    ctx = ProviderContext("hanging", logging.getLogger("hanging"), StaticCluster(), NoSecrets(), interval=0.05)  # type: ignore[arg-type]
    events: asyncio.Queue[Event] = asyncio.Queue()
    replies: asyncio.Queue[Reply] = asyncio.Queue()
    scanning = asyncio.create_task(provider.start(events, replies, ctx))

    lease = f"starve-{uuid.uuid4().hex[:6]}"
    coordination = client.CoordinationV1Api(hypernode_api)
    observer = ThreadPoolExecutor(1)  # reads the Lease without any code under test in the way

    def read_renew_time() -> str | None:
        try:
            return str(coordination.read_namespaced_lease(lease, "default").spec.renew_time)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    elector = LeaderElector(
        ClusterClient(hypernode_api, timeout=1.0, concurrency=2), "default", lease, "solo",
        request_timeout=0.5, lease_duration=3.0, renew_deadline=2.0, retry_period=0.25,
    )  # fmt: skip
    hypernodes = HyperNodeClient(hypernode_api, concurrency=2, timeout=5.0)
    electing: asyncio.Task[None] | None = None
    try:
        deadline = time.monotonic() + 15
        while provider.stats.failures < HUNG_SCANS + 2:
            assert time.monotonic() < deadline, f"only {provider.stats.failures} scans failed"
            await asyncio.sleep(0.05)
        electing = asyncio.create_task(elector.run())
        seen: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            renewed = await asyncio.wait_for(loop.run_in_executor(observer, read_renew_time), 5)
            if renewed and (not seen or seen[-1] != renewed):
                seen.append(renewed)
            await asyncio.sleep(0.1)
        listed = await asyncio.wait_for(hypernodes.list(), 5)
        leading, renewing = elector.is_leader(), elector.renewing()
    finally:
        release.set()
        ctx.stopping.set()
        if electing is not None:
            electing.cancel()
        await asyncio.gather(*[t for t in (scanning, electing) if t is not None], return_exceptions=True)
        await asyncio.gather(*blockers)
        hypernodes.close()
        observer.shutdown()
    print(f"{provider.threads.limit} scan threads hung, {len(blockers)} jobs blocking the default executor "
          f"({default_executor_threads()} threads): {len(seen)} distinct renewTimes in 4s, "
          f"{elector.renewals} renewals; a list returned {len(listed)} HyperNodes")  # fmt: skip
    assert len(seen) >= 8, f"renewTime advanced only {len(seen)} times in 4s: {seen}"
    assert seen == sorted(seen)
    assert leading and renewing
    assert f"{HUNG_SCANS} earlier scan(s) still running" in (provider.stats.last_error or "")


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_healthz_fails_when_the_lease_loop_stops_completing_attempts(
    proxied_kubeconfig: str, faults: FaultProxy, hypernode_api: client.ApiClient, tmp_path: Path
) -> None:
    lease = f"stuck-{uuid.uuid4().hex[:6]}"
    elector = LeaderElector(
        ClusterClient(kube.api_client(proxied_kubeconfig), timeout=0.5, concurrency=2), "default", lease, "solo",
        request_timeout=0.4, lease_duration=2.0, renew_deadline=1.5, retry_period=0.2,
    )  # fmt: skip
    (tmp_path / "c.yaml").write_text("networkTopologyDiscovery: []\n")
    controller = Controller(hypernode_api, ConfigSource.parse(str(tmp_path / "c.yaml"), None))
    port = free_port()
    health = HealthServer(controller, elector.is_leader, lambda: True, port, host="127.0.0.1",
                          liveness={"leader election renewing": elector.renewing})  # fmt: skip
    await health.start()
    url = f"http://127.0.0.1:{port}/healthz"
    electing = asyncio.create_task(elector.run())
    try:
        deadline = time.monotonic() + 10
        while not elector.is_leader():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        status, body = await asyncio.to_thread(get, url)
        assert (status, body["checks"]) == (200, {"leader election renewing": True})

        # Answers that trickle in byte by byte pin the elector's threads; later requests never get one.
        faults.add(Rule(None, f"/leases/{lease}", action="drip", delay=0.1, times=1_000_000))
        stuck = time.monotonic()
        while status == 200:
            assert time.monotonic() - stuck < 10, "/healthz kept answering 200"
            await asyncio.sleep(0.1)
            status, body = await asyncio.to_thread(get, url)
        took = time.monotonic() - stuck
    finally:
        electing.cancel()
        await asyncio.gather(electing, return_exceptions=True)
        faults.release()
        await health.stop()
    print(f"/healthz answered {status} {body} {took:.1f}s after the lease requests hung (lease 2s)")
    assert status == 503
    assert body["status"] == "failing"
    assert body["failing"] == ["leader election renewing"]
    assert not elector.is_leader()
