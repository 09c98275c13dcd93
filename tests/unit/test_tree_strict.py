"""TreeBuilder's strict mode refuses input that needs repairing; lenient mode repairs it and says so."""

from __future__ import annotations

import logging

import pytest
from volcano_topology_emulated.model import FabricModel, FabricState
from volcano_topology_emulated.provider import MODELS

from volcano_topology.sdk import TreeBuilder, TreeError


def rows(**options: object) -> TreeBuilder:
    """Two rows of racks; node-2 is (wrongly) listed under a rack of each row."""
    tree = TreeBuilder(tier_names={1: "rack", 2: "row"}, **options)  # type: ignore[arg-type]
    tree.switch("row-a").switch("row-b")
    tree.switch("rack-a1", parents=["row-a"]).attach("rack-a1", "node-1", "node-2")
    tree.switch("rack-b1", parents=["row-b"]).attach("rack-b1", "node-2", "node-3")
    return tree


def test_strict_is_the_default() -> None:
    assert TreeBuilder().strict is True


def test_a_node_under_two_switches_not_declared_rails_is_refused_naming_node_and_switches() -> None:
    with pytest.raises(TreeError) as raised:
        rows().build()
    assert raised.value.problems == [
        "node 'node-2': attached to switches rack-a1, rack-b1, which are not declared rails of one another "
        "(declare them with TreeBuilder.rails(), or fix the input)"
    ]


def test_a_switch_name_that_needs_rewriting_is_refused_naming_the_switch() -> None:
    tree = TreeBuilder()
    tree.switch("row-a").switch("Bad_Name!", parents=["row-a"]).attach("Bad_Name!", "node-1")
    tree.switch("x" * 64, parents=["row-a"]).attach("x" * 64, "node-2")
    with pytest.raises(TreeError) as raised:
        tree.build()
    [bad, long] = raised.value.problems
    assert bad.startswith("switch 'Bad_Name!': not a valid HyperNode name (it would be rewritten to 'bad-name')")
    assert long.startswith(f"switch '{'x' * 64}': the HyperNode name '{'x' * 64}' is not valid: longer than 63")


def test_the_prefix_counts_towards_the_length() -> None:
    name = "x" * 60
    TreeBuilder().switch(name).attach(name, "n1").build()
    with pytest.raises(TreeError, match="longer than 63 characters"):
        TreeBuilder(name_prefix="ufm-").switch(name).attach(name, "n1").build()


def test_every_problem_is_reported_at_once() -> None:
    tree = rows()
    tree.switch("Rack B2", parents=["row-b"]).attach("Rack B2", "node-4")
    with pytest.raises(TreeError) as raised:
        tree.build()
    assert [p.split(":")[0] for p in raised.value.problems] == ["node 'node-2'", "switch 'Rack B2'"]


def test_declared_rails_build_in_strict_mode_exactly_as_lenient_mode_joins_them() -> None:
    strict = rows().rails("rack-a1", "rack-b1")
    lenient = rows(strict=False)
    assert [h.to_dict() for h in strict.build()] == [h.to_dict() for h in lenient.build()]
    assert strict.repairs == []


def test_rails_declarations_add_up() -> None:
    tree = TreeBuilder()
    for rail in ("r0", "r1", "r2"):
        tree.switch(f"leaf-{rail}").attach(f"leaf-{rail}", "h1", "h2")
    tree.rails("leaf-r0", "leaf-r1").rails("leaf-r1", "leaf-r2")
    [leaf] = tree.build()
    assert leaf.spec is not None and leaf.spec.tier == 1 and len(leaf.members) == 2


def test_lenient_mode_repairs_and_lists_each_repair(caplog: pytest.LogCaptureFixture) -> None:
    tree = rows(strict=False)
    tree.switch("Bad_Name!", parents=["row-b"]).attach("Bad_Name!", "node-4")
    caplog.set_level(logging.WARNING, logger="volcano_topology.sdk.tree")
    names = {h.name for h in tree.build()}
    assert "bad-name" in names
    assert tree.repairs == [
        "node 'node-2': attached to switches rack-a1, rack-b1, which are not declared rails of one another; "
        "joined those switches into one HyperNode, and their uplinks into one",
        "switch 'Bad_Name!': renamed to bad-name (not a valid HyperNode name)",
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "volcano_topology.sdk.tree"]
    assert logged == [f"TreeBuilder(strict=False) repaired its input: {repair}" for repair in tree.repairs]


def test_lenient_mode_reports_names_hashed_after_a_collision() -> None:
    tree = TreeBuilder(strict=False)
    tree.switch("spine").switch("LEAF_A", parents=["spine"]).attach("LEAF_A", "n1")
    tree.switch("leaf-a", parents=["spine"]).attach("leaf-a", "n2")
    tree.build()
    assert [r.split(" (")[1] for r in tree.repairs] == [
        "not a valid HyperNode name)",
        "another switch's name sanitises to the same)",
    ]


def test_repairs_are_reset_by_each_build() -> None:
    tree = rows(strict=False)
    tree.build()
    tree.build()
    assert len(tree.repairs) == 1


def test_valid_input_needs_no_repair_in_lenient_mode() -> None:
    tree = TreeBuilder(strict=False).switch("spine").switch("leaf", parents=["spine"]).attach("leaf", "n1")
    tree.build()
    assert tree.repairs == []


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.stem)
def test_the_emulated_models_build_strictly_as_they_did_leniently(path: object) -> None:
    model = FabricModel.load(path)  # type: ignore[arg-type]
    for at in [0.0, *(at for at, _ in model.timeline())]:
        tree = FabricState.at(model, at).tree(model)
        built = [h.to_dict() for h in tree.build()]
        tree.strict = False
        assert [h.to_dict() for h in tree.build()] == built
        assert tree.repairs == []
