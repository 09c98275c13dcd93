"""The emulated fabric: ranges, model checks, the scripted timeline, injected faults, shipped models."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from volcano_topology_emulated.model import FabricModel, FabricState, node_manifests
from volcano_topology_emulated.provider import EmulatedProvider, EmulatedSettings, shipped_models
from volcano_topology_emulated.ranges import RangeError, expand

from volcano_topology.plan import with_ownership
from volcano_topology.sdk.scanning import as_hypernodes
from volcano_topology.tree import tree_problems
from volcano_topology.validation import check_document

BASE = {
    "tierNames": {1: "leaf", 2: "spine"},
    "switches": [
        {"name": "spine-0"},
        {"name": "leaf-0", "parents": ["spine-0"], "nodes": ["gpu[1-2]"]},
        {"name": "leaf-1", "parents": ["spine-0"], "nodes": ["gpu[3-4]"]},
    ],
}


def members(state: FabricState, model: FabricModel) -> dict[str, list[str]]:
    return {h.name: [m.selector.exact_match.name for m in h.members] for h in state.tree(model).build()}  # type: ignore[union-attr]


def test_ranges() -> None:
    assert expand("gpu[001-003]") == ["gpu001", "gpu002", "gpu003"]
    assert expand("r[1,3]-n[8-9]") == ["r1-n8", "r1-n9", "r3-n8", "r3-n9"]
    assert expand("plain") == ["plain"]
    with pytest.raises(RangeError, match="runs backwards"):
        expand("gpu[9-1]")
    with pytest.raises(RangeError, match="is not a number or a range"):
        expand("gpu[a-z]")


def test_model_errors_name_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="switch leaf-0: parent nope is not declared"):
        FabricModel.model_validate({"switches": [{"name": "leaf-0", "parents": ["nope"]}]})
    with pytest.raises(ValidationError, match="exactly one of moveNode, addSwitch, removeSwitch, restoreSwitch, flap"):
        FabricModel.model_validate({**BASE, "changes": [{"at": 1}]})
    with pytest.raises(ValidationError, match="runs backwards"):
        FabricModel.model_validate({"switches": [{"name": "l", "nodes": ["n[5-1]"]}]})
    with pytest.raises(ValidationError, match="not a shipped model"):
        EmulatedSettings.model_validate({"modelFile": "no-such-model"})


def test_scripted_timeline() -> None:
    model = FabricModel.model_validate({
        **BASE,
        "changes": [
            {"at": 10, "moveNode": {"node": "gpu1", "to": "leaf-1"}},
            {"at": 20, "addSwitch": {"name": "leaf-2", "parents": ["spine-0"], "nodes": ["gpu5"]}},
            {"at": 30, "removeSwitch": "leaf-2"},
            {"at": 40, "flap": {"switch": "leaf-0", "period": 5, "count": 3}},
        ],
    })  # fmt: skip
    assert members(FabricState.at(model, 0), model)["leaf-0"] == ["gpu1", "gpu2"]
    assert members(FabricState.at(model, 10), model)["leaf-1"] == ["gpu1", "gpu3", "gpu4"]
    assert members(FabricState.at(model, 25), model)["spine-0"] == ["leaf-0", "leaf-1", "leaf-2"]
    assert "leaf-2" not in members(FabricState.at(model, 30), model)
    assert "leaf-0" not in members(FabricState.at(model, 41), model)  # flapped down
    assert "leaf-0" in members(FabricState.at(model, 46), model)  # back up
    assert "leaf-0" not in members(FabricState.at(model, 51), model)  # down again (3 toggles)
    assert model.all_nodes() == ["gpu1", "gpu2", "gpu3", "gpu4", "gpu5"]


def provider(**extra: object) -> EmulatedProvider:
    return EmulatedProvider(EmulatedSettings.model_validate({**BASE, **extra}))


async def scan(p: EmulatedProvider) -> object:
    p.stats.scans += 1  # as ScanningProvider counts before calling scan()
    return p.scan()


async def test_the_clock_drives_the_script() -> None:
    now = [100.0]
    p = provider(changes=[{"at": 5, "removeSwitch": "leaf-1"}])
    p.clock = lambda: now[0]
    assert {h.name for h in as_hypernodes(await scan(p))} == {"leaf-0", "leaf-1", "spine-0"}  # type: ignore[arg-type]
    now[0] = 106.0
    assert {h.name for h in as_hypernodes(await scan(p))} == {"leaf-0", "spine-0"}  # type: ignore[arg-type]


async def test_injected_faults() -> None:
    raising = provider(faults={"raiseScan": {"every": 2}})
    await scan(raising)
    with pytest.raises(RuntimeError, match="injected fault: scan 2 failed"):
        await scan(raising)

    slow = provider(faults={"slowScan": {"every": 1, "seconds": 0.2}})
    started = asyncio.get_running_loop().time()
    await scan(slow)
    assert asyncio.get_running_loop().time() - started >= 0.2

    not_hypernodes = provider(faults={"garbage": {"every": 1, "kind": "not-hypernodes"}})
    with pytest.raises(TypeError):
        as_hypernodes(await scan(not_hypernodes))  # type: ignore[arg-type]

    two_leaves = as_hypernodes(await scan(provider(faults={"garbage": {"every": 1, "kind": "two-leaves"}})))  # type: ignore[arg-type]
    assert [p.rule for p in tree_problems({h.name: h for h in two_leaves})] == ["node in one leaf"] * 2

    invalid = as_hypernodes(await scan(provider(faults={"garbage": {"every": 1, "kind": "invalid-name"}})))  # type: ignore[arg-type]
    assert any(not check_document(h.to_dict()).ok for h in invalid)


def test_node_manifests() -> None:
    model = FabricModel.model_validate({**BASE, "nodeLabels": {"pool": "gpu"}})
    nodes = node_manifests(model)
    assert [n["metadata"]["name"] for n in nodes] == ["gpu1", "gpu2", "gpu3", "gpu4"]
    assert nodes[0]["metadata"]["labels"] == {"volcano-topology.io/emulated": "true", "pool": "gpu"}


@pytest.mark.parametrize("name", shipped_models())
def test_every_shipped_model_is_a_valid_strict_tree(name: str) -> None:
    settings = EmulatedSettings.model_validate({"modelFile": name})
    model = settings.fabric
    built = FabricState.at(model, 0).tree(model).build()
    written = {h.name: with_ownership(h, "emulated") for h in built}
    assert tree_problems(written) == []
    assert all(check_document(h.to_dict()).ok for h in written.values())
    placed = [m.selector.exact_match.name for h in built if h.spec.tier == 1 for m in h.members]  # type: ignore[union-attr]
    assert sorted(placed) == model.all_nodes() or model.changes, "every node in exactly one leaf"
    assert len(placed) == len(set(placed))


def test_the_largest_model_has_16384_nodes() -> None:
    assert "large-16384" in shipped_models()
    model = EmulatedSettings.model_validate({"modelFile": "large-16384"}).fabric
    assert len(model.all_nodes()) == 16384


def test_a_model_without_a_script_is_built_once_and_a_new_model_again() -> None:
    p = provider()
    p.stats.scans += 1
    first = p.scan()
    p.stats.scans += 1
    assert p.scan() is first, "the same model, no scripted changes: the same result, not rebuilt"
    p.model = p.model.model_copy(deep=True)  # what watchModelFile does when the file changes
    p.stats.scans += 1
    assert p.scan() is not first
