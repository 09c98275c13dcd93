"""The writer fence (deploy/base/writer-fence.yaml) on the real API server: a create sent in a leader term the
Lease no longer has is refused; nothing else is touched; the writer sends its term and never rewrites for one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.builders import leaf
from tests.faultproxy import FaultProxy, Rule
from tests.integration.conftest import FAST_RETRIES, WriterFactory, cluster_hypernodes, drain
from tests.integration.test_fence import LEASE, LEASE_CLIENT_TIMEOUT, RENEW, RETRY, WRITE_TIMEOUT, Recorder
from tests.integration.writer_fence import WriterFence, hypernode
from volcano_topology import fence, kube
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.fencecheck import FenceState, check_fence
from volcano_topology.kube import ClusterClient, HyperNodeClient, KubeError
from volcano_topology.leader import LeaderElector
from volcano_topology.plan import with_ownership
from volcano_topology.provider import Event, RetriesExhausted
from volcano_topology.retries import RetryPolicy

NAMESPACE = "default"


class Lease:
    """A Lease this test moves from holder to holder by hand, as an elector would."""

    def __init__(self, api: client.ApiClient, name: str) -> None:
        self.leases, self.name = client.CoordinationV1Api(api), name

    def hold(self, holder: str, transitions: int) -> str:
        """``holder`` holds it now; the term the policy expects from it."""
        spec = {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions}
        try:
            lease = self.leases.read_namespaced_lease(self.name, NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.name}, "spec": spec}
            self.leases.create_namespaced_lease(NAMESPACE, body)
        else:
            lease.spec.holder_identity, lease.spec.lease_transitions = holder, transitions
            self.leases.replace_namespaced_lease(self.name, NAMESPACE, lease)
        return fence.term(NAMESPACE, self.name, holder, transitions)

    def delete(self) -> None:
        try:
            self.leases.delete_namespaced_lease(self.name, NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def lease(hypernode_api: client.ApiClient) -> Iterator[Lease]:
    made = Lease(hypernode_api, f"fence-{uuid.uuid4().hex[:6]}")
    yield made
    made.delete()


@pytest.fixture
def writer_fence(hypernode_api: client.ApiClient, lease: Lease, faults: FaultProxy) -> WriterFence:
    return WriterFence(hypernode_api, NAMESPACE, lease.name).install()  # never removed: see WriterFence


def create(api: client.ApiClient, body: dict[str, Any]) -> int:
    """The status of a plain create: 201, or the refusal's status."""
    try:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    except client.ApiException as exc:
        return int(exc.status or 0)
    return 201


def refusal(api: client.ApiClient, body: dict[str, Any]) -> KubeError:
    with pytest.raises(client.ApiException) as refused:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    return KubeError.from_exception(refused.value)


def until(condition: Any, within: float = 20.0) -> int:
    """Poll ``condition`` (the API server applies a Lease change to admission a moment later); the tries taken."""
    deadline, tries = time.monotonic() + within, 0
    while True:
        tries += 1
        if condition():
            return tries
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def test_the_fence_refuses_only_a_create_or_upsert_sent_in_a_term_the_lease_no_longer_has(
    hypernode_api: client.ApiClient, lease: Lease, writer_fence: WriterFence
) -> None:
    objects = client.CustomObjectsApi(hypernode_api)
    p = f"wf-{uuid.uuid4().hex[:4]}"
    a_term = lease.hold("a", 0)
    writer_fence.wait_active()
    assert create(hypernode_api, hypernode(f"{p}-a0", a_term)) == 201, "the holder's create passes"

    b_term = lease.hold("b", 1)
    until(lambda: create(hypernode_api, hypernode(f"{p}-b0", b_term)) == 201)
    refused = refusal(hypernode_api, hypernode(f"{p}-late", a_term))
    print(f"refused: {refused}")
    assert refused.status == 403 and fence.is_fenced(refused.status, refused.message)
    for part in (f"HyperNode {p}-late", f"term {a_term}", f"Lease is in term {b_term}", fence.TERM_ANNOTATION):
        assert part in refused.message, f"the refusal names {part!r}: {refused.message}"
    assert f"{p}-late" not in cluster_hypernodes(hypernode_api)

    # Someone else's objects, and ours sent without a term (no leader election), never meet the fence.
    assert create(hypernode_api, hypernode(f"{p}-foreign", a_term, managed=False)) == 201, "no managed-by label"
    assert create(hypernode_api, hypernode(f"{p}-unfenced", None)) == 201, "no term annotation"
    other = fence.term(NAMESPACE, f"{lease.name}-other", "a", 0)
    assert create(hypernode_api, hypernode(f"{p}-other", other)) == 201, "another installation's Lease"
    # A server-side-apply create upserts: one sent in the old term that meets the new leader's object (same
    # field manager on every replica, so no conflict) would overwrite it. It puts its term on the object: refused.
    apply(objects, hypernode(f"{p}-b1", b_term))  # the new leader's create
    moved = hypernode(f"{p}-b1", a_term)
    moved["spec"]["members"][0]["selector"]["exactMatch"]["name"] = "stale"
    with pytest.raises(client.ApiException) as upsert:
        apply(objects, moved)
    assert upsert.value.status == 403 and fence.is_fenced(403, str(upsert.value.body))
    assert spec_node(objects, f"{p}-b1") == f"{p}-b1-node", "the new leader's object is as it made it"
    apply(objects, hypernode(f"{p}-b1", b_term) | {"spec": moved["spec"]})  # a new leader's upsert passes
    assert spec_node(objects, f"{p}-b1") == "stale"
    # So is a term put on an object that had none.
    unfenced = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-unfenced")
    stamped = hypernode(f"{p}-unfenced", a_term, resource_version=unfenced["metadata"]["resourceVersion"])
    with pytest.raises(client.ApiException) as stamping:
        objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-unfenced", stamped)
    assert stamping.value.status == 403
    # Updates that keep the term the object was created in are not checked (they carry a resourceVersion, which
    # fences them), nor ones that drop it, nor deletes.
    current = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-a0")
    updated = hypernode(f"{p}-a0", a_term, resource_version=current["metadata"]["resourceVersion"])
    updated["spec"]["members"][0]["selector"]["exactMatch"]["name"] = "moved"
    objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-a0", updated)
    assert spec_node(objects, f"{p}-a0") == "moved"
    current = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-a0")
    dropped = hypernode(f"{p}-a0", None, resource_version=current["metadata"]["resourceVersion"])
    objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-a0", dropped)
    objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, f"{p}-a0")

    # No Lease, no leader to fence against: creates pass (parameterNotFoundAction: Allow).
    lease.delete()
    until(lambda: create(hypernode_api, hypernode(f"{p}-nolease", a_term)) == 201)


def apply(objects: client.CustomObjectsApi, body: dict[str, Any]) -> None:
    """A server-side apply without resourceVersion, as the writer creates: it upserts."""
    name, apply_patch = body["metadata"]["name"], "application/apply-patch+yaml"
    objects.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, body, field_manager="fence-test",
                                        _content_type=apply_patch)  # fmt: skip


def spec_node(objects: client.CustomObjectsApi, name: str) -> str:
    obj = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    node: str = obj["spec"]["members"][0]["selector"]["exactMatch"]["name"]
    return node


def elected(cluster: client.ApiClient, lease: Lease, identity: str) -> LeaderElector:
    return LeaderElector(ClusterClient(cluster, timeout=LEASE_CLIENT_TIMEOUT, concurrency=2), NAMESPACE, lease.name,
                         identity, retry_period=RETRY, lease_duration=LEASE, renew_deadline=RENEW,
                         request_timeout=WRITE_TIMEOUT)  # fmt: skip


async def test_the_writer_sends_creates_in_its_term_and_never_rewrites_an_object_for_a_new_one(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, lease: Lease,
    writer_fence: WriterFence,
) -> None:  # fmt: skip
    term = {"now": lease.hold("a", 0)}
    writer_fence.wait_active()
    writer = make_writer()
    writer.client.term = lambda: term["now"]
    channel = writer.open("fabric")
    tree = [leaf("t-l1", "n1"), leaf("t-l2", "n2")]
    assert await writer.process(channel, [Event.snapshot(tree)])
    created = cluster_hypernodes(hypernode_api)
    assert {n: o["metadata"]["annotations"][fence.TERM_ANNOTATION] for n, o in created.items()} == {
        "t-l1": term["now"], "t-l2": term["now"],
    }  # fmt: skip

    # A failover: the same snapshot from the new leader writes nothing; an update keeps the creation term.
    a_term, term["now"] = term["now"], lease.hold("b", 1)
    faults.reset()
    assert await writer.process(channel, [Event.snapshot(tree)])
    assert faults.writes() == [], "a new term is no reason to write"
    moved = [leaf("t-l1", "n1", "n9"), leaf("t-l2", "n2"), leaf("t-l3", "n3")]
    until(lambda: create(hypernode_api, hypernode("t-probe", term["now"])) == 201)  # the server has the new term
    assert await writer.process(channel, [Event.snapshot(moved)])
    after = cluster_hypernodes(hypernode_api, "fabric")
    assert after["t-l1"]["metadata"]["annotations"][fence.TERM_ANNOTATION] == a_term, "updated, created in term a"
    assert after["t-l3"]["metadata"]["annotations"][fence.TERM_ANNOTATION] == term["now"]
    assert after["t-l1"]["spec"]["members"][-1]["selector"]["exactMatch"]["name"] == "n9"
    assert drain(channel) == []
    assert channel.stats.writes == {"create": 3, "update": 1}
    faults.reset()
    assert await writer.process(channel, [Event.snapshot(moved)])
    assert faults.writes() == []


async def test_a_create_the_fence_refuses_is_retried_then_reported_and_nothing_is_written(
    make_writer: WriterFactory, faults: FaultProxy, hypernode_api: client.ApiClient, lease: Lease,
    writer_fence: WriterFence,
) -> None:  # fmt: skip
    lease.hold("a", 0)
    writer_fence.wait_active()
    # The gate is open but the term is not the Lease's: a replica whose view is behind. The create is retried
    # (a new leader whose term the server has not applied yet passes on a retry) and, refused every time, reported.
    writer = make_writer(retry=RetryPolicy(initial=0.05, maximum=0.2, jitter=0.0, attempts=4, deadline=10.0))
    writer.client.term = lambda: fence.term(NAMESPACE, lease.name, "stale", 0)
    channel = writer.open("fabric")
    assert not await writer.process(channel, [Event.create(leaf("f-l1", "n1"))])
    [reply] = drain(channel)
    assert isinstance(reply.error, RetriesExhausted)
    assert reply.attempts == 4
    assert fence.TERM_ANNOTATION in str(reply.error) and "f-l1" in str(reply.error)
    assert "f-l1" not in cluster_hypernodes(hypernode_api)
    assert faults.count("PATCH", "/hypernodes/f-l1") == 4

    # The new leader's term reaches admission a moment after its Lease write: its first create passes, on a
    # retry if it came first.
    writer = make_writer(retry=FAST_RETRIES)
    term = lease.hold("b", 1)
    writer.client.term = lambda: term
    channel = writer.open("fabric")
    assert await writer.process(channel, [Event.create(leaf("f-l2", "n2"))])
    assert cluster_hypernodes(hypernode_api)["f-l2"]["metadata"]["annotations"][fence.TERM_ANNOTATION] == term


async def test_a_deposed_leaders_create_still_on_the_wire_is_refused_after_the_new_leaders_first_write(
    proxied_kubeconfig: str, faults: FaultProxy, hypernode_api: client.ApiClient, lease: Lease,
    writer_fence: WriterFence,
) -> None:  # fmt: skip
    """A sends a create through the proxy, which holds it well past A's lease; B takes over and writes first."""
    objects = client.CustomObjectsApi(hypernode_api)
    proxied = kube.api_client(proxied_kubeconfig)
    a, b = elected(proxied, lease, "a"), elected(hypernode_api, lease, "b")
    a_writes = HyperNodeClient(proxied, concurrency=2, timeout=WRITE_TIMEOUT, gate=a.is_leader, term=a.term)
    b_writes = HyperNodeClient(hypernode_api, concurrency=2, timeout=WRITE_TIMEOUT, gate=b.is_leader, term=b.term)
    hold = LEASE + 4.0  # A's create reaches the server only this long after it was sent: after B's takeover
    recorder: Recorder | None = None
    tasks = [asyncio.create_task(a.run())]
    try:
        await until_async(a.is_leader, 10)
        writer_fence.wait_active()  # its parameter is the Lease A just created
        since = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)["metadata"]["resourceVersion"]
        recorder = Recorder(hypernode_api, since).start()
        tasks.append(asyncio.create_task(b.run()))
        faults.add(Rule("PATCH", "/hypernodes/late-a", action="delay", delay=hold, times=1))
        faults.add(Rule(None, f"/leases/{lease.name}", status=503, reason="ServiceUnavailable", times=1_000_000))
        a_term = a.term()
        sent = time.monotonic()
        with pytest.raises(KubeError):  # abandoned by A's client after its timeout; the bytes stay on the wire
            await a_writes.apply(ours(leaf("late-a", "n1")), "fence-test", force=False, create=True)
        await until_async(b.is_leader, 15)
        b_first = time.monotonic()
        await b_writes.apply(ours(leaf("first-b", "n2")), "fence-test", force=False, create=True)
        await asyncio.sleep(max(0.0, sent + hold - time.monotonic()) + 1.0)  # A's create was forwarded by now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if recorder is not None:
            recorder.stop()
        faults.release()
        a_writes.close()
        b_writes.close()

    [held] = [r for r in faults.requests if r.method == "PATCH" and r.name == "late-a"]
    assert held.forwarded is not None and held.forwarded > b_first, "A's create reached the server after B's first"
    print(f"A's create (term {a_term}) forwarded {held.forwarded - b_first:.1f}s after B's first write: {held.status}")
    assert held.status == 403, "and the server refused it"
    assert recorder is not None and recorder.failure is None
    assert [e.name for e in recorder.landed] == ["first-b"], "nothing of A's landed"
    assert "late-a" not in cluster_hypernodes(hypernode_api)


def ours(hypernode: HyperNode) -> dict[str, Any]:
    return with_ownership(hypernode, "fabric").to_dict()


async def until_async(condition: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def test_the_leader_finds_out_whether_the_fence_is_in_force_without_storing_anything(
    hypernode_api: client.ApiClient, lease: Lease, writer_fence: WriterFence, faults: FaultProxy
) -> None:
    lease.hold("me", 0)
    writer_fence.wait_active()
    cluster = ClusterClient(hypernode_api)
    try:
        assert await check_fence(cluster, NAMESPACE, lease.name, "me") == FenceState.IN_FORCE
        unfenced = await check_fence(cluster, NAMESPACE, f"{lease.name}-unfenced", "me")
        assert unfenced == FenceState.ABSENT, "no fence names that Lease"
        elsewhere = await check_fence(cluster, "no-such-namespace", lease.name, "me")
        assert elsewhere == FenceState.ABSENT
    finally:
        cluster.close()
    assert fence.PROBE_NAME not in cluster_hypernodes(hypernode_api), "a dry run: the probe is never stored"
