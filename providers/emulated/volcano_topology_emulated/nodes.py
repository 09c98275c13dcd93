"""Node objects for a fully emulated cluster. Used by ``volcano-topology dev`` (an operator-side tool:
providers themselves never get a write-capable client)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from volcano_topology_emulated.model import FabricModel, node_manifests

FIELD_MANAGER = "volcano-topology-emulated"


def apply_nodes(api: client.ApiClient, model: FabricModel, workers: int = 8) -> int:
    """Create (or leave as they are) the Node objects of every node the model mentions; returns how many."""
    core = client.CoreV1Api(api)

    def apply(node: dict[str, Any]) -> None:
        core.patch_node(
            node["metadata"]["name"], node, field_manager=FIELD_MANAGER, force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    manifests = node_manifests(model)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(apply, manifests))
    return len(manifests)
