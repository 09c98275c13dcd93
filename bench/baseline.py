"""The raw baseline: a bare concurrent client, no logic, reaching the same desired state as the operator.

For each object (leaves first): a server-side apply of the manifest, then a server-side apply of
the same ``Synced`` status the operator writes (through ``/status``, with the generation the
first answer gave). ``concurrency`` threads, each with its own kept-alive connection.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.kubehttp import APPLY, Api
from bench.measure import HYPERNODES

MANAGER = "bench-baseline"


def synced_status(generation: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"conditions": [{"type": "Synced", "status": "True", "reason": "Applied",
                            "message": "matches what the provider reported", "lastTransitionTime": now,
                            "observedGeneration": generation}]}  # fmt: skip


def apply_one(api: Api, manifest: dict[str, Any]) -> None:
    name = manifest["metadata"]["name"]
    path = f"{HYPERNODES}/{name}?fieldManager={MANAGER}&force=true"
    applied = api.must("PATCH", path, manifest, APPLY)
    status = {"apiVersion": manifest["apiVersion"], "kind": "HyperNode", "metadata": {"name": name},
              "status": synced_status(int(applied["metadata"]["generation"]))}  # fmt: skip
    api.must("PATCH", f"{HYPERNODES}/{name}/status?fieldManager={MANAGER}-status&force=true", status, APPLY)


def apply_all(api: Api, manifests: list[dict[str, Any]], concurrency: int) -> float:
    """Apply every manifest and its status; returns the seconds it took (all answers read)."""
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="baseline") as pool:
        list(pool.map(lambda m: apply_one(api, m), manifests))
    return time.monotonic() - started


def create_nodes(api: Api, nodes: list[dict[str, Any]], concurrency: int) -> float:
    """Node objects for the nodeCount scenario (not measured): server-side applied, ``concurrency`` threads."""
    started = time.monotonic()

    def one(node: dict[str, Any]) -> None:
        api.must("PATCH", f"/api/v1/nodes/{node['metadata']['name']}?fieldManager={MANAGER}&force=true",
                 json.loads(json.dumps(node)), APPLY)  # fmt: skip

    with ThreadPoolExecutor(concurrency, thread_name_prefix="nodes") as pool:
        list(pool.map(one, nodes))
    return time.monotonic() - started


def delete_nodes(api: Api, names: list[str], concurrency: int) -> None:
    with ThreadPoolExecutor(concurrency, thread_name_prefix="nodes") as pool:
        list(pool.map(lambda n: api.must("DELETE", f"/api/v1/nodes/{n}"), names))
