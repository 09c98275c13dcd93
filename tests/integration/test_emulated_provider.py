"""The emulated fabric through the registry, the runner and the real writer; supervision of a crashing provider."""

from __future__ import annotations

import asyncio

from kubernetes import client

from tests.builders import leaf
from tests.integration.conftest import WriterFactory, cluster_hypernodes, members, wait_for
from volcano_topology import registry
from volcano_topology.provider import Event, OwnershipConflict, Provider, ProviderContext, Reply
from volcano_topology.runner import ProviderRun


def emulated(config: dict[str, object]) -> Provider:
    loaded, errors = registry.load(["emulated"])
    assert errors == []
    return registry.instantiate(loaded["emulated"], config)


async def test_script_changes_reach_the_cluster(make_writer: WriterFactory, hypernode_api: client.ApiClient) -> None:
    provider = emulated(
        {"modelFile": "small-64", "changes": [{"at": 10, "moveNode": {"node": "gpu01", "to": "leaf-001"}}]}
    )
    now = [0.0]
    provider.clock = lambda: now[0]  # type: ignore[attr-defined]
    run = ProviderRun("emulated", provider, make_writer(), interval=3600)
    run.start()
    try:
        await wait_for(lambda: len(run.channel.owned) == 11 and run.channel.idle.is_set())
        assert members(cluster_hypernodes(hypernode_api)["leaf-000"])[0] == "gpu01"
        now[0] = 11.0
        provider.rescan()  # type: ignore[attr-defined]

        def moved() -> bool:
            owned = run.channel.owned.get("leaf-001")
            return owned is not None and "gpu01" in [m.selector.exact_match.name for m in owned.members]  # type: ignore[union-attr]

        await wait_for(lambda: moved() and run.channel.idle.is_set())
    finally:
        await run.stop(grace=1, drain=5)
    objects = cluster_hypernodes(hypernode_api, "emulated")
    assert "gpu01" not in members(objects["leaf-000"])
    assert "gpu01" in members(objects["leaf-001"])


async def test_garbage_from_the_fabric_is_refused_and_the_last_good_topology_stays(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    provider = emulated({"modelFile": "tiny-8", "faults": {"garbage": {"every": 2, "kind": "two-leaves"}}})
    run = ProviderRun("emulated", provider, make_writer(), interval=3600)
    run.start()
    try:
        await wait_for(lambda: len(run.channel.owned) == 3 and run.channel.idle.is_set())
        good = cluster_hypernodes(hypernode_api, "emulated")
        provider.rescan()  # type: ignore[attr-defined]  # scan 2 returns garbage
        await wait_for(lambda: run.channel.stats.failures["TopologyViolation"] > 0 and run.channel.idle.is_set())
    finally:
        await run.stop(grace=1, drain=5)
    after = cluster_hypernodes(hypernode_api, "emulated")
    assert {n: members(o) for n, o in after.items()} == {n: members(o) for n, o in good.items()}
    assert "garbage-leaf" not in after


class Crashing(Provider):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        self.starts += 1
        raise RuntimeError(f"vendor SDK exploded (start {self.starts})")


async def test_a_crashing_provider_is_restarted_with_backoff_and_others_keep_writing(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    writer = make_writer()
    crashing = Crashing()
    bad = ProviderRun("crashing", crashing, writer, initial_backoff=0.05, max_backoff=0.2)
    steady = emulated({"modelFile": "tiny-8"})
    good = ProviderRun("emulated", steady, writer, interval=3600)
    bad.start()
    good.start()
    try:
        await wait_for(lambda: bad.restarts >= 3 and len(good.channel.owned) == 3)
    finally:
        await bad.stop(grace=1, drain=1)
        await good.stop(grace=1, drain=5)
    assert crashing.starts >= 3
    assert bad.last_error is not None
    assert "vendor SDK exploded" in bad.last_error
    assert set(cluster_hypernodes(hypernode_api, "emulated")) == {"leaf-0", "leaf-1", "spine-0"}


async def test_replies_reach_only_the_provider_that_caused_them(make_writer: WriterFactory) -> None:
    writer = make_writer()
    a, b = writer.open("a"), writer.open("b")
    assert await writer.process(a, [Event.create(leaf("shared-name", "n1"))])
    assert not await writer.process(b, [Event.create(leaf("shared-name", "n2"))])
    assert a.replies.empty()
    assert b.replies.qsize() == 1
    reply = await b.replies.get()
    assert isinstance(reply.error, OwnershipConflict)
    assert "provider a" in str(reply.error)


def test_emulated_nodes_become_node_objects(hypernode_api: client.ApiClient) -> None:
    from volcano_topology_emulated.model import FabricModel
    from volcano_topology_emulated.nodes import apply_nodes

    model = FabricModel.model_validate({
        "switches": [{"name": "leaf", "nodes": ["emu-node-[1-6]"]}], "nodeLabels": {"pool": "gpu"},
    })  # fmt: skip
    core = client.CoreV1Api(hypernode_api)
    try:
        assert apply_nodes(hypernode_api, model) == 6
        assert apply_nodes(hypernode_api, model) == 6, "applying again changes nothing and does not fail"
        nodes = core.list_node(label_selector="volcano-topology.io/emulated=true,pool=gpu").items
        assert sorted(n.metadata.name for n in nodes) == [f"emu-node-{i}" for i in range(1, 7)]
    finally:
        for i in range(1, 7):
            core.delete_node(f"emu-node-{i}")
