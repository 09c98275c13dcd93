"""The Node view: one paginated LIST, then a watch that follows adds, deletes and label changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from volcano_topology.nodewatch import NodeCache

pytestmark = pytest.mark.integration

PREFIX = "nodewatch-"


def make_node(core: client.CoreV1Api, name: str, **labels: str) -> None:
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})


@pytest.fixture
def core(admin_api: client.ApiClient) -> Iterator[client.CoreV1Api]:
    api = client.CoreV1Api(admin_api)
    yield api
    for node in api.list_node().items:
        if node.metadata.name.startswith(PREFIX):
            api.delete_node(node.metadata.name)


def ours(cache: NodeCache) -> dict[str, dict[str, str]]:
    return {n: dict(labels) for n, labels in cache.labels().items() if n.startswith(PREFIX)}


async def test_the_view_lists_in_pages_then_follows_label_changes_and_deletes(
    admin_api: client.ApiClient, core: client.CoreV1Api
) -> None:
    for i in range(5):
        make_node(core, f"{PREFIX}{i}", rack=f"r{i % 2}")
    cache = NodeCache(admin_api, page_size=2)
    assert not cache.synced()
    cache.start()
    try:
        seen = await asyncio.wait_for(cache.changed(0), 20)
        assert cache.synced()
        assert ours(cache) == {f"{PREFIX}{i}": {"rack": f"r{i % 2}"} for i in range(5)}
        assert cache.lists == 1, "the first LIST is paged, and counts once"

        core.patch_node(f"{PREFIX}0", {"metadata": {"labels": {"rack": "r9"}}})
        seen = await asyncio.wait_for(cache.changed(seen), 20)
        await asyncio.wait_for(_until(cache, lambda: ours(cache)[f"{PREFIX}0"] == {"rack": "r9"}), 20)

        core.delete_node(f"{PREFIX}4")
        await asyncio.wait_for(_until(cache, lambda: f"{PREFIX}4" not in ours(cache)), 20)
        assert cache.generation > seen
    finally:
        cache.stop()


async def test_a_status_only_update_changes_nothing_and_wakes_nobody(
    admin_api: client.ApiClient, core: client.CoreV1Api
) -> None:
    make_node(core, f"{PREFIX}a", rack="r1")
    make_node(core, f"{PREFIX}b", rack="r1")
    cache = NodeCache(admin_api)
    cache.start()
    try:
        seen = await asyncio.wait_for(cache.changed(0), 20)
        status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                             "message": "ok"}]}}  # fmt: skip
        for _ in range(3):
            core.patch_node_status(f"{PREFIX}a", status)
        # A label change afterwards marks the point where the status updates were surely seen.
        core.patch_node(f"{PREFIX}b", {"metadata": {"labels": {"rack": "r2"}}})
        await asyncio.wait_for(_until(cache, lambda: ours(cache)[f"{PREFIX}b"] == {"rack": "r2"}), 20)
        assert cache.generation == seen + 1, "only the label change counted"
    finally:
        cache.stop()


async def test_a_watch_the_server_ends_is_resumed_without_listing_again(
    admin_api: client.ApiClient, core: client.CoreV1Api
) -> None:
    cache = NodeCache(admin_api, watch_timeout=1)  # the server closes each watch after a second
    cache.start()
    try:
        await asyncio.wait_for(cache.changed(0), 20)
        await asyncio.sleep(3.5)  # at least three watches ended by the server
        make_node(core, f"{PREFIX}late", rack="r3")
        await asyncio.wait_for(_until(cache, lambda: f"{PREFIX}late" in ours(cache)), 20)
        assert cache.lists == 1
        assert cache.errors == 0
    finally:
        cache.stop()


async def test_stop_returns_at_once_and_ends_the_watch_thread(admin_api: client.ApiClient) -> None:
    cache = NodeCache(admin_api)
    cache.start()
    await asyncio.wait_for(cache.changed(0), 20)
    await asyncio.sleep(0.5)  # the thread is now blocked reading the watch stream
    cache.stop()  # on the event loop: must not wait for the blocked read
    assert await asyncio.to_thread(cache.stopped, 10), "the watch thread ended"
    assert cache.errors == 0, "a stop is not a failure"


async def _until(cache: NodeCache, condition: Callable[[], bool]) -> None:
    while not condition():
        await cache.changed(cache.generation)
