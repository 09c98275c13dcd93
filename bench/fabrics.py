"""The benchmark's fabrics (the emulated provider's ``clos``/``rails`` generators) and their changes.

Pure functions: a model in, a model (or the desired HyperNodes) out.
"""

from __future__ import annotations

import copy
import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from volcano_topology_emulated.model import FabricModel, FabricState

from bench.measure import Wanted
from volcano_topology.plan import with_ownership
from volcano_topology.status import node_count

TOOLS = Path(__file__).resolve().parents[1] / "providers" / "emulated" / "tools" / "make_models.py"
PER_LEAF = 32


@cache
def generators() -> ModuleType:
    """providers/emulated/tools/make_models.py, imported by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_make_models", TOOLS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fat_tree(nodes: int, node: str = "gpu", prefix: str = "") -> dict[str, Any]:
    """3 tiers, 32 nodes per leaf, 32 leaves per spine (at least 2 spines), 1 core (2 above 4,096 nodes)."""
    leaves = nodes // PER_LEAF
    spines = max(2, leaves // 32)
    model: dict[str, Any] = generators().clos(leaves, PER_LEAF, spines, 1 if nodes <= 4096 else 2, node=node)
    if prefix:
        model["namePrefix"] = prefix
    return model


def rail_fabric(nodes: int) -> dict[str, Any]:
    """Rail-optimised: scalable units of 32 hosts, 8 rails each (a host on 8 leaves), 8 spine planes."""
    model: dict[str, Any] = generators().rails(nodes // 32, 32, 8)
    return model


def desired(model: dict[str, Any], source: str, nodes: set[str] | None = None) -> dict[str, Wanted]:
    """What the operator must write for ``model``: the emulated provider's own scan, with ownership labels;
    with ``nodes`` (the cluster's Node names) also each object's ``nodeCount``, by Volcano's rules."""
    fabric = FabricModel.model_validate(model)
    built = FabricState.at(fabric, 0).tree(fabric).build()
    view: dict[str, dict[str, str]] = {n: {} for n in nodes or ()}
    return {
        h.name: Wanted(
            source, with_ownership(h, source).to_dict()["spec"], node_count(h, view) if nodes is not None else None
        )
        for h in built
    }


def manifests(model: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The same objects as full manifests, leaves first (for the baseline client)."""
    fabric = FabricModel.model_validate(model)
    built = FabricState.at(fabric, 0).tree(fabric).build()
    objects = [with_ownership(h, source).to_dict() for h in built]
    return sorted(objects, key=lambda o: (o["spec"]["tier"], o["metadata"]["name"]))


def leaves(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in model["switches"] if s.get("nodes")]


def node_names(switch: dict[str, Any]) -> list[str]:
    from volcano_topology_emulated.ranges import expand

    return [n for pattern in switch.get("nodes", []) for n in expand(pattern)]


def move_nodes(model: dict[str, Any], count: int, offset: int = 0) -> dict[str, Any]:
    """``count`` nodes each moved to the next leaf (the i-th from leaf i mod L, starting at ``offset``).

    Node ranges are expanded to plain names only on the leaves that change.
    """
    out = copy.deepcopy(model)
    found = leaves(out)
    members = {s["name"]: node_names(s) for s in found}
    for i in range(count):
        source = found[(offset + i) % len(found)]
        target = found[(offset + i + 1) % len(found)]
        index = (offset + i) // len(found)
        name = members[source["name"]][index % len(members[source["name"]])]
        if name in members[source["name"]]:
            members[source["name"]].remove(name)
            members[target["name"]].append(name)
    for switch in found:
        names = members[switch["name"]]
        if names != node_names(switch):
            switch["nodes"] = sorted(names)
    return out


def remove_leaf(model: dict[str, Any], index: int = 0) -> dict[str, Any]:
    out = copy.deepcopy(model)
    gone = leaves(out)[index]["name"]
    out["switches"] = [s for s in out["switches"] if s["name"] != gone]
    return out
