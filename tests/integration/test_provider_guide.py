"""Each shape of provider from docs/write-a-provider.md, run as written through the real writer."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import WriterFactory, cluster_hypernodes, members, run_until
from volcano_topology import ownership
from volcano_topology.runner import ProviderRun

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "write-a-provider.md"


def example(name: str) -> dict[str, Any]:
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert match, f"example {name} is missing from the guide"
    namespace: dict[str, Any] = {"__name__": f"guide_{name}"}
    exec(compile(match.group(1), f"{GUIDE.name}:{name}", "exec"), namespace)
    return namespace


async def test_function_example(make_writer: WriterFactory, hypernode_api: client.ApiClient) -> None:
    provider = example("function")["RackProvider"]()
    await run_until(provider, "racks", make_writer, lambda run: len(run.channel.owned) == 3)
    objects = cluster_hypernodes(hypernode_api, "racks")
    assert members(objects["row-a"]) == ["rack-a0", "rack-a1"]
    assert objects["rack-a1"]["spec"]["tierName"] == "rack"


async def test_scanning_example_with_settings_and_post_process(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    namespace = example("scanning")
    provider = namespace["PodProvider"](namespace["PodSettings"](pods=3, site="lab"))
    await run_until(provider, "pods", make_writer, lambda run: len(run.channel.owned) == 4)
    objects = cluster_hypernodes(hypernode_api, "pods")
    assert members(objects["lab-spine"]) == ["lab-pod0", "lab-pod1", "lab-pod2"]
    labels = objects["lab-pod1"]["metadata"]["labels"]
    assert labels == {**ownership.ownership_labels("pods"), "topology.example.com/site": "lab"}


async def test_lifecycle_example_refreshes_then_follows_changes(
    make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    provider = example("lifecycle")["SubscriptionProvider"]()
    before = asyncio.all_tasks()

    def updated(run: ProviderRun) -> bool:
        leaf = run.channel.owned.get("sub-leaf-1")
        return leaf is not None and len(leaf.members) == 2

    await run_until(provider, "sub", make_writer, updated)
    assert members(cluster_hypernodes(hypernode_api, "sub")["sub-leaf-1"]) == ["sub-node-2", "sub-node-3"]
    await asyncio.sleep(0)
    leaked = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leaked == set(), f"tasks left behind: {leaked}"


@pytest.mark.parametrize("shape", ["function", "scanning", "lifecycle"])
def test_examples_are_small(shape: str) -> None:
    match = re.search(rf"<!-- example: {shape} -->\n```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert match
    assert len(match.group(1).splitlines()) <= 45
