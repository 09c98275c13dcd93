"""A status write refused with Retry-After is not tried again before that time (a floor, as for spec writes)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from volcano_topology import ownership
from volcano_topology.hypernodecache import HyperNodeCache
from volcano_topology.kube import ClusterClient, KubeError
from volcano_topology.nodewatch import NodeCache
from volcano_topology.status import SyncState
from volcano_topology.statuswriter import StatusScope, StatusWriter


class Refusing(ClusterClient):
    def __init__(self, api: client.ApiClient, retry_after: float) -> None:
        super().__init__(api)
        self.retry_after = retry_after
        self.calls = 0

    async def apply_hypernode_status(self, name: str, status: dict[str, Any], manager: str, **_: Any) -> dict[str, Any]:
        self.calls += 1
        raise KubeError(429, "TooManyRequests", "slow down", retry_after=self.retry_after)


async def test_a_429_with_retry_after_holds_the_name_back_until_then() -> None:
    api = client.ApiClient(client.Configuration())
    cache = HyperNodeCache(api)
    body = {"metadata": {"name": "leaf", "uid": "u1", "resourceVersion": "5", "generation": 1,
                         "labels": ownership.ownership_labels("fabric")},
            "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": "n1"}}}]}}  # fmt: skip
    cache.replace({"leaf": cache.convert(body)}, "5")
    cache.generation = 1
    refusing = Refusing(api, retry_after=0.6)
    state = {"fabric": {"leaf": SyncState(True, "Applied", "")}}
    scope = StatusScope(conditions=True, node_count=False, sync=state, gate=lambda: True)
    writer = StatusWriter(cache, NodeCache(api), refusing, lambda: scope)

    writer.dirty(None)
    await writer.write_pass()
    assert refusing.calls == 1
    writer.dirty(["leaf"])
    await writer.write_pass()
    writer.dirty(None)
    await writer.write_pass()
    assert refusing.calls == 1, "written again before Retry-After"
    await asyncio.sleep(0.7)
    assert "leaf" in writer._dirty, "marked again when Retry-After is up"
    await writer.write_pass()
    assert refusing.calls == 2
