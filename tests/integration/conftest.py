"""Fixtures for writer tests: a fault proxy in front of the real API server, writers that go through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.faultproxy import FaultProxy
from volcano_topology import kube, ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.hypernodecache import HyperNodeCache
from volcano_topology.kube import HyperNodeClient
from volcano_topology.provider import Reply
from volcano_topology.retries import RetryPolicy
from volcano_topology.runner import ProviderRun
from volcano_topology.writer import ProviderChannel, Writer, WriterSettings

FAST_RETRIES = RetryPolicy(initial=0.05, maximum=0.5, jitter=0.05, attempts=8, deadline=20.0)


@pytest.fixture(scope="session")
def proxy(control_plane: LocalControlPlane, hypernode_api: client.ApiClient) -> Iterator[FaultProxy]:
    assert control_plane.pki is not None
    pki = control_plane.pki
    fault_proxy = FaultProxy(control_plane.url, pki.ca_cert, pki.serving_cert, pki.serving_key).start()
    yield fault_proxy
    fault_proxy.stop()


@pytest.fixture(scope="session")
def proxied_kubeconfig(control_plane: LocalControlPlane, proxy: FaultProxy) -> str:
    path = control_plane.workdir / "proxied.kubeconfig"
    return str(control_plane.write_kubeconfig(path, control_plane.admin_token, "admin-via-proxy", server=proxy.url))


@pytest.fixture
def faults(proxy: FaultProxy, hypernode_api: client.ApiClient) -> Iterator[FaultProxy]:
    """A clean proxy and a cluster without volcano-topology's HyperNodes, before and after each test."""
    delete_managed(hypernode_api)
    proxy.reset()
    yield proxy
    proxy.reset()
    delete_managed(hypernode_api)


def delete_managed(api: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api)
    for item in objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
        if item["metadata"]["name"] != "parity-status":
            objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item["metadata"]["name"])


WriterFactory = Callable[..., Writer]


@pytest.fixture
async def make_writer(proxied_kubeconfig: str, faults: FaultProxy) -> AsyncIterator[WriterFactory]:
    """A writer as the operator builds it: planning from a watch-fed cache (``cache=False``: LIST per batch)."""
    made: list[client.ApiClient] = []
    caches: list[HyperNodeCache] = []

    def factory(timeout: float = 2.0, concurrency: int = 8, cache: bool = True, **settings: Any) -> Writer:
        api = kube.api_client(proxied_kubeconfig, pool_size=concurrency + 1)
        made.append(api)
        settings.setdefault("retry", FAST_RETRIES)
        view = None
        if cache:
            view = HyperNodeCache(api, backoff=0.2, max_backoff=1.0)
            view.start()
            caches.append(view)
        client_ = HyperNodeClient(api, concurrency=concurrency, timeout=timeout)
        return Writer(client_, WriterSettings(**settings), cache=view)

    yield factory
    for view in caches:
        view.stop()
    for api in made:
        api.close()


def cluster_hypernodes(api: client.ApiClient, provider: str | None = None) -> dict[str, dict[str, Any]]:
    selector = f"{ownership.SOURCE_LABEL}={provider}" if provider else None
    items = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=selector)
    return {i["metadata"]["name"]: i for i in items["items"] if i["metadata"]["name"] != "parity-status"}


def drain(channel: ProviderChannel) -> list[Reply]:
    replies = []
    while not channel.replies.empty():
        replies.append(channel.replies.get_nowait())
    return replies


def members(obj: dict[str, Any]) -> list[str]:
    return [m["selector"]["exactMatch"]["name"] for m in obj["spec"].get("members", [])]


async def run_until(provider: Any, name: str, make_writer: WriterFactory, done: Callable[[Any], bool],
                    interval: float = 0.1) -> None:  # fmt: skip
    """Run ``provider`` through ProviderRun and the real writer until ``done(run)``, then stop it cleanly."""
    run = ProviderRun(name, provider, make_writer(), interval=interval)
    run.start()
    try:
        await wait_for(lambda: done(run) and run.channel.idle.is_set())
    finally:
        await run.stop(grace=1, drain=5)


async def wait_for(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)
