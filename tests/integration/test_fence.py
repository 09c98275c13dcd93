"""The write fence of a deposed leader, against the real API server through the fault proxy.

A leads through the proxy and keeps writing; the proxy slows A's HyperNode writes to just
under the request timeout, answers A's last successful renewal late, then fails every
renewal. B (direct) takes over and writes. A watch on the server records the order in which
writes landed: nothing A wrote may land after B's first write, and the gate is never open on both.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, watch

from tests.faultproxy import FaultProxy, Rule
from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.kube import ClusterClient, HyperNodeClient, KubeError, NotLeading
from volcano_topology.leader import LeaderElector

WRITER = "fence.volcano-topology.test/writer"
MANAGER = "fence-test"

# Lease 5 s, renew deadline 2.5 s, writes bounded by 1 s: 2.5 + 1 < 5, with room for a slow machine.
LEASE, RENEW, WRITE_TIMEOUT, RETRY = 5.0, 2.5, 1.0, 0.25
WRITE_DELAY = 0.9  # what the proxy holds each of A's HyperNode writes: just under the request timeout
# A's last successful renewal is applied by the server at once but answered this late. Timed from
# the answer (as before this fence), A would keep writing until 2.2 + 2.5 + 0.9 s: past the lease.
LATE_ANSWER = 2.2
LEASE_CLIENT_TIMEOUT = 2.4  # lets that late answer arrive


def leaf(name: str, node: str, writer: str, resource_version: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "annotations": {WRITER: writer}}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperNode",
        "metadata": metadata,
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": node}}}]},
    }


@dataclass(frozen=True)
class Landed:
    at: float  # monotonic time the watch delivered it
    name: str
    writer: str
    resource_version: str


class Recorder:
    """Watches HyperNodes from a thread: the server's order of the writes that landed."""

    def __init__(self, api: client.ApiClient, since: str) -> None:
        self.api, self.since = api, since
        self.landed: list[Landed] = []
        self.stopped = False
        self.failure: Exception | None = None
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, name="fence-watch", daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped = True
        self._watch.stop()

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        stream = self._watch.stream(
            objects.list_cluster_custom_object, GROUP, VERSION, PLURAL, resource_version=self.since,
            timeout_seconds=120,
        )  # fmt: skip
        try:
            for event in stream:
                obj = event["object"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    meta = obj["metadata"]
                    writer = (meta.get("annotations") or {}).get(WRITER, "")
                    self.landed.append(Landed(time.monotonic(), meta["name"], writer, meta["resourceVersion"]))
        except Exception as exc:
            self.failure = None if self.stopped else exc  # once stopped, its connection may close under it


async def write_as(
    hypernodes: HyperNodeClient, elector: LeaderElector, name: str, node: str, tag: str, stop: asyncio.Event,
    offset: float = 0.0,
) -> list[float]:  # fmt: skip
    """The writer's update path: gate, fresh read, gate, conditional forced apply; until ``stop``.

    Starting ``offset`` late spreads several loops' sends over time (each cycle takes about as long).
    """
    sent: list[float] = []
    n = 0
    await asyncio.sleep(offset)
    while not stop.is_set():
        if not elector.is_leader():
            await asyncio.sleep(0.01)
            continue
        try:
            current = await hypernodes.get(name)
            if current is None or not elector.is_leader():
                continue
            n += 1
            sent.append(time.monotonic())
            body = leaf(name, node, f"{tag}-{n}", current["metadata"]["resourceVersion"])
            await hypernodes.apply(body, MANAGER, force=True)
        except (NotLeading, KubeError):
            await asyncio.sleep(0.01)
    return sent


async def test_a_deposed_leader_lands_no_write_after_the_new_leaders_first(
    proxied_kubeconfig: str, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    lease, prefix = f"fence-{uuid.uuid4().hex[:6]}", f"fence-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(4)]
    objects = client.CustomObjectsApi(hypernode_api)
    for i, name in enumerate(names):
        objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, leaf(name, f"node-{i}", "init"))
    since = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)["metadata"]["resourceVersion"]
    recorder = Recorder(hypernode_api, since).start()

    proxied = kube.api_client(proxied_kubeconfig)
    timings = {"lease_duration": LEASE, "renew_deadline": RENEW, "request_timeout": WRITE_TIMEOUT}
    a = LeaderElector(ClusterClient(proxied, timeout=LEASE_CLIENT_TIMEOUT, concurrency=2), "default", lease, "a",
                      retry_period=RETRY, **timings)  # fmt: skip
    b = LeaderElector(ClusterClient(hypernode_api, timeout=LEASE_CLIENT_TIMEOUT, concurrency=2), "default", lease, "b",
                      retry_period=0.1, **timings)  # fmt: skip
    a_writes = HyperNodeClient(proxied, concurrency=len(names), timeout=WRITE_TIMEOUT, gate=a.is_leader)
    b_writes = HyperNodeClient(hypernode_api, concurrency=len(names), timeout=WRITE_TIMEOUT, gate=b.is_leader)
    stop = asyncio.Event()
    both = samples = 0

    async def sample() -> None:
        nonlocal both, samples
        while not stop.is_set():
            samples += 1
            both += a.is_leader() and b.is_leader()
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(a.run())]
    a_loops: list[asyncio.Task[list[float]]] = []
    try:
        deadline = time.monotonic() + 10
        while not a.is_leader():
            assert time.monotonic() < deadline, "A did not become the leader"
            await asyncio.sleep(0.05)
        tasks += [asyncio.create_task(b.run()), asyncio.create_task(sample())]
        faults.add(Rule("PATCH", f"/hypernodes/{prefix}-", action="delay", delay=WRITE_DELAY, times=1_000_000))
        a_loops = [
            asyncio.create_task(write_as(a_writes, a, name, f"node-{i}", "a", stop, i * WRITE_DELAY / len(names)))
            for i, name in enumerate(names)
        ]
        await asyncio.sleep(2.0)
        assert a.is_leader() and not b.is_leader()

        # One more renewal succeeds but is answered late, then every renewal fails.
        faults.add(Rule("PUT", f"/leases/{lease}", action="slow_answer", delay=LATE_ANSWER, times=1))
        faults.add(Rule("GET", f"/leases/{lease}", action="forward", times=1))
        faults.add(Rule(None, f"/leases/{lease}", status=503, reason="ServiceUnavailable", times=1_000_000))
        cut = time.monotonic()
        while not b.is_leader():
            assert time.monotonic() - cut < 15, "B did not take over"
            await asyncio.sleep(0.005)
        took_over = time.monotonic()
        # B's first write is to an object A never writes, so a late write of A's cannot be
        # turned away by its resourceVersion: only the fence keeps it from landing after this.
        b_sent = [time.monotonic()]
        await b_writes.apply(leaf(f"{prefix}-b", "node-b", "b-0"), MANAGER, force=False)
        await asyncio.sleep(WRITE_TIMEOUT + WRITE_DELAY)  # anything of A's still in flight lands now (or never)
        for i, name in enumerate(names):
            current = await b_writes.get(name)
            assert current is not None
            b_sent.append(time.monotonic())
            await b_writes.apply(leaf(name, f"node-{i}", "b-1", current["metadata"]["resourceVersion"]),
                                 MANAGER, force=True)  # fmt: skip
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        a_sent = [t for loop in await asyncio.gather(*a_loops, return_exceptions=True) if isinstance(loop, list)
                  for t in loop]  # fmt: skip
        await asyncio.gather(*tasks, return_exceptions=True)
        recorder.stop()
        faults.release()
        a_writes.close()
        b_writes.close()

    assert recorder.failure is None, f"the watch broke: {recorder.failure!r}"
    landed = recorder.landed
    first_b = next(i for i, e in enumerate(landed) if e.writer.startswith("b-"))
    late = [e for e in landed[first_b:] if e.writer.startswith("a-")]
    a_landed = [e for e in landed if e.writer.startswith("a-")]
    patches = [r for r in faults.requests if r.method == "PATCH" and r.forwarded is not None]
    last_a = max(r.answered or 0.0 for r in patches if r.status == 200)
    rejected = sum(r.status == 409 for r in patches)
    print(
        f"A: {len(a_landed)} writes landed, {len(a_sent)} sent, last sent {max(a_sent) - cut:.2f}s after the cut, "
        f"last landed (answered upstream) {last_a - cut:.2f}s; {rejected} rejected as stale. "
        f"B took over {took_over - cut:.2f}s after the cut, first write sent {b_sent[0] - cut:.2f}s, "
        f"first landed (watch) {landed[first_b].at - cut:.2f}s; gate open on both in {both} of {samples} samples"
    )
    assert len(a_landed) >= 4, "A wrote while it led"
    assert late == [], f"A's writes landed after B's first write: {late}"
    assert last_a < landed[first_b].at
    assert both == 0, f"the gate was open on both in {both} of {samples} samples"


async def test_a_request_is_bounded_in_total_even_when_the_answer_trickles(
    proxied_kubeconfig: str, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    """urllib3's total timeout bounds each socket read, not the whole answer: the client bounds it itself."""
    hypernodes = HyperNodeClient(kube.api_client(proxied_kubeconfig), concurrency=1, timeout=1.0)
    faults.add(Rule("GET", "/hypernodes", action="drip", delay=0.05, times=1))
    started = time.monotonic()
    try:
        with pytest.raises(KubeError) as failure:
            await asyncio.wait_for(hypernodes.list(), 15)
    finally:
        faults.release()
        hypernodes.close()
    took = time.monotonic() - started
    print(f"a trickling answer was abandoned after {took:.2f}s (timeout 1s): {failure.value}")
    assert failure.value.status == 0
    assert took < 1.5


async def test_the_gate_is_checked_when_the_request_is_sent_not_when_it_was_queued(
    proxied_kubeconfig: str, faults: FaultProxy, hypernode_api: client.ApiClient
) -> None:
    open_gate = True
    hypernodes = HyperNodeClient(
        kube.api_client(proxied_kubeconfig), concurrency=1, timeout=5.0, gate=lambda: open_gate
    )
    faults.add(Rule("GET", "/hypernodes/held", action="delay", delay=1.0, times=1))
    first = asyncio.create_task(hypernodes.get("held"))
    await asyncio.sleep(0.2)
    queued = asyncio.create_task(hypernodes.get("queued"))  # waits: the only request slot is busy
    await asyncio.sleep(0.2)
    open_gate = False
    try:
        assert await first is None  # sent while open: it completes (404: no such object)
        with pytest.raises(NotLeading):
            await queued
    finally:
        faults.release()
        hypernodes.close()
    assert faults.count("GET", "/hypernodes/queued") == 0, "nothing is sent once the gate is closed"
