"""The pure step: UFM JSON in, a strict tree of every tier out; odd and partial answers refused."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ufm_testlib import Model, UFMAnswers, fat_tree, fixture_answers, rail_optimised, to_ufm, two_tier
from volcano_topology_ufm.build import build_tree, check_host_drop, switch_ids
from volcano_topology_ufm.parse import UFMDataError, check_complete, elements, parse_fabric
from volcano_topology_ufm.settings import UFMSettings

from volcano_topology.api import HyperNode
from volcano_topology.sdk.hostnames import NodeNameMapping
from volcano_topology.testing import assert_strict_tree


def make_settings(**extra: Any) -> UFMSettings:
    return UFMSettings.model_validate({"endpoint": "ufm.example.com", **extra})


def hypernodes(answers: UFMAnswers, **extra: Any) -> dict[str, HyperNode]:
    fabric = parse_fabric(answers.ports, answers.links, answers.systems)
    check_complete(fabric)
    built = build_tree(fabric, make_settings(**extra))
    return {h.name: h for h in built.tree.build()}


def by_tier(found: dict[str, HyperNode]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, hn in sorted(found.items()):
        assert hn.spec is not None
        out.setdefault(hn.spec.tier, []).append(name)
    return dict(sorted(out.items()))


def member_names(hn: HyperNode) -> list[str]:
    return sorted(m.selector.exact_match.name for m in hn.members if m.selector and m.selector.exact_match)


def leaf_of(found: dict[str, HyperNode]) -> dict[str, str]:
    """node -> its leaf; fails when a node is in two."""
    homes: dict[str, str] = {}
    for name, hn in found.items():
        for member in hn.members:
            if member.type == "Node" and member.selector and member.selector.exact_match:
                node = member.selector.exact_match.name
                assert node not in homes, f"{node} in {homes.get(node)} and {name}"
                homes[node] = name
    return homes


# -- the real samples ------------------------------------------------------------------------


def test_the_real_samples_parse_and_are_refused_as_partial() -> None:
    """The samples' host port is cabled to SLG02-07, which their systems do not list: partial, refused."""
    answers = fixture_answers()
    fabric = parse_fabric(answers.ports, answers.links, answers.systems)
    assert set(fabric.switches) == {"1c34da0300728606"}
    assert fabric.switches["1c34da0300728606"].name == "SLG01-02"
    assert fabric.unknown_peers == {"luna-0218": {"SLG02-07"}}
    with pytest.raises(UFMDataError, match=r"partial answer: 1 host\(s\) .*luna-0218 -> SLG02-07"):
        check_complete(fabric)


def test_the_real_samples_with_their_leaf_listed_build_a_leaf() -> None:
    answers = fixture_answers()
    leaf = copy.deepcopy(answers.systems[0])
    leaf.update(guid="0c42a103005de2f0", system_guid="0c42a103005de2f0", name="0c42a103005de2f0",
                system_name="SLG02-07", ports=["0c42a103005de2f0_6"])  # fmt: skip
    answers.systems.append(leaf)
    found = hypernodes(answers)
    assert by_tier(found) == {1: ["slg02-07"]}
    assert member_names(found["slg02-07"]) == ["luna-0218"]
    assert found["slg02-07"].spec.tier_name == "leaf"  # type: ignore[union-attr]


# -- every tier ---------------------------------------------------------------------------------


def test_two_tier_fabric() -> None:
    found = hypernodes(to_ufm(two_tier(leaves=2, spines=1, hosts=2)))
    assert by_tier(found) == {1: ["leaf-0", "leaf-1"], 2: ["spine-0"]}
    assert member_names(found["spine-0"]) == ["leaf-0", "leaf-1"]
    assert member_names(found["leaf-1"]) == ["gpu-100", "gpu-101"]
    assert_strict_tree(found)


def test_three_tier_fat_tree_gives_every_tier() -> None:
    found = hypernodes(to_ufm(fat_tree(pods=2, leaves=2, spines=2, cores=2, hosts=2)))
    tiers = by_tier(found)
    assert tiers[1] == ["leaf-p0-0", "leaf-p0-1", "leaf-p1-0", "leaf-p1-1"]
    assert len(tiers[2]) == 2 and all(n.startswith("spine-p") and "-x2-" in n for n in tiers[2])  # a pod's spines
    assert len(tiers[3]) == 1 and tiers[3][0].startswith("core-0-x2-")  # the cores, joined
    assert member_names(found[tiers[3][0]]) == tiers[2]
    pod0 = next(n for n in tiers[2] if n.startswith("spine-p0"))
    assert member_names(found[pod0]) == ["leaf-p0-0", "leaf-p0-1"]
    assert found[tiers[3][0]].spec.tier_name == "core"  # type: ignore[union-attr]
    assert_strict_tree(found)


def test_four_tier_fabric() -> None:
    model = fat_tree(pods=2, leaves=1, spines=1, cores=1, hosts=1)
    model.switches.append("SUPER-0")
    model.cables.append(("CORE-0", "SUPER-0"))
    model.switches.append("CORE-1")
    model.cables += [("SPINE-P1-0", "CORE-1"), ("CORE-1", "SUPER-0")]
    model.cables.remove(("SPINE-P1-0", "CORE-0"))
    found = hypernodes(to_ufm(model))
    assert by_tier(found) == {1: ["leaf-p0-0", "leaf-p1-0"], 2: ["spine-p0-0", "spine-p1-0"],
                              3: ["core-0", "core-1"], 4: ["super-0"]}  # fmt: skip
    assert_strict_tree(found)


def test_rail_optimised_fabric_groups_rails_into_scalable_units() -> None:
    model = rail_optimised(sus=2, rails=8, hosts=4, spines_per_rail=1)
    found = hypernodes(to_ufm(model))
    tiers = by_tier(found)
    assert len(tiers[1]) == 2, tiers  # one leaf HyperNode per scalable unit, never one per rail
    su0 = next(n for n in tiers[1] if n.startswith("su0-rail0-x8-"))
    assert member_names(found[su0]) == [f"dgx-su0-{h:02d}" for h in range(4)]
    assert len(tiers[2]) == 1 and tiers[2][0].startswith("spine-r0-0-x8-")  # every rail's spine, joined
    assert member_names(found[tiers[2][0]]) == tiers[1]
    assert len(leaf_of(found)) == 8
    assert_strict_tree(found)


def test_a_spine_with_hosts_keeps_them_in_a_leaf_of_their_own() -> None:
    model = two_tier(leaves=2, spines=1, hosts=1)
    model.hosts["STORAGE-1"] = ["SPINE-0"]
    found = hypernodes(to_ufm(model))
    assert by_tier(found) == {1: ["leaf-0", "leaf-1", "spine-0-hosts"], 2: ["spine-0"]}
    assert member_names(found["spine-0-hosts"]) == ["storage-1"]
    assert member_names(found["spine-0"]) == ["leaf-0", "leaf-1", "spine-0-hosts"]


def test_the_ufm_servers_of_an_ha_pair_on_two_spines_get_leaves_of_their_own() -> None:
    """Every leaf is cabled to both spines, and both spines have a host: the spines are not leaves, the leaves are."""
    model = two_tier(leaves=2, spines=2, hosts=2)
    model.hosts["UFM-A"] = ["SPINE-0"]
    model.hosts["UFM-B"] = ["SPINE-1"]
    found = hypernodes(to_ufm(model))
    tiers = by_tier(found)
    assert tiers[1] == ["leaf-0", "leaf-1", "spine-0-hosts", "spine-1-hosts"]
    assert member_names(found["leaf-0"]) == ["gpu-000", "gpu-001"]
    assert member_names(found["spine-1-hosts"]) == ["ufm-b"]
    (spines,) = tiers[2]
    assert member_names(found[spines]) == tiers[1]
    assert_strict_tree(found)


def test_a_leaf_pair_under_a_spine_with_hosts() -> None:
    """The pair's cross link makes each leaf cabled to two switches with hosts (its pair and the spine): still
    leaves, since the spine has fewer hosts per cable; the cross link is ignored."""
    model = two_tier(leaves=3, spines=1, hosts=3)
    model.cables.append(("LEAF-0", "LEAF-1"))
    model.hosts["STORAGE-1"] = ["SPINE-0"]
    found = hypernodes(to_ufm(model))
    assert by_tier(found) == {1: ["leaf-0", "leaf-1", "leaf-2", "spine-0-hosts"], 2: ["spine-0"]}
    assert member_names(found["leaf-1"]) == ["gpu-100", "gpu-101", "gpu-102"]
    assert_strict_tree(found)


def test_non_leaf_switches_settles_what_the_cabling_cannot() -> None:
    """Leaves and spines alike: one host each, cabled both ways. The spines named in nonLeafSwitches do not count
    as leaves cabled to the leaves."""
    model = two_tier(leaves=2, spines=2, hosts=1)
    model.hosts["UFM-A"] = ["SPINE-0"]
    model.hosts["UFM-B"] = ["SPINE-1"]
    with pytest.raises(UFMDataError, match=r"no leaf switch: .*\(name the spines and cores with hosts in nonLeafSw"):
        hypernodes(to_ufm(model))
    found = hypernodes(to_ufm(model), nonLeafSwitches=["SPINE-.*"])
    assert by_tier(found)[1] == ["leaf-0", "leaf-1", "spine-0-hosts", "spine-1-hosts"]
    assert member_names(found["leaf-1"]) == ["gpu-100"]
    assert_strict_tree(found)


def test_non_leaf_switches_names_a_core_with_a_host() -> None:
    model = fat_tree(pods=2, leaves=1, spines=1, cores=1, hosts=1)
    model.hosts["UFM-SERVER"] = ["CORE-0"]
    wrong = hypernodes(to_ufm(model))  # a core with one host looks like a leaf: nothing can tell
    assert "core-0" in by_tier(wrong)[1]
    found = hypernodes(to_ufm(model), nonLeafSwitches=["CORE-.*"])
    assert by_tier(found) == {1: ["core-0-hosts", "leaf-p0-0", "leaf-p1-0"], 2: ["spine-p0-0", "spine-p1-0"],
                              3: ["core-0"]}  # fmt: skip
    assert_strict_tree(found)


def test_a_named_core_above_a_single_pod_keeps_its_hosts() -> None:
    """Cabled like a leaf without hosts (left out), but it has a host: it stays, with its hosts' leaf."""
    model = fat_tree(pods=1, leaves=2, spines=2, cores=1, hosts=1)
    model.hosts["UFM-SERVER"] = ["CORE-0"]
    found = hypernodes(to_ufm(model), nonLeafSwitches=["CORE-.*"])
    assert leaf_of(found)["ufm-server"] == "core-0-hosts"
    assert by_tier(found)[3] == ["core-0"]
    assert_strict_tree(found)


def test_a_mapped_host_in_no_leaf_refuses_the_scan() -> None:
    """The last line of defence: were a leaf with hosts ever left out, the scan is refused, not written short."""
    from volcano_topology_ufm.build import check_every_node_placed

    check_every_node_placed(["a", "b"], {"a": ["leaf-0"], "b": ["leaf-1"]})
    with pytest.raises(UFMDataError, match=r"1 mapped host\(s\) in no leaf \(b\)"):
        check_every_node_placed(["a", "b"], {"a": ["leaf-0"]})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["fat", "rails"]),
    sizes=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2)),
    extra=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=4),
    cross=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=2),
)
def test_hosts_on_any_switches_each_land_in_exactly_one_leaf_or_the_scan_is_refused(
    kind: str, sizes: tuple[int, int, int, int], extra: list[tuple[int, int]], cross: list[tuple[int, int]]
) -> None:
    """Hosts on spines and cores, extra cables anywhere: never a mapped host silently left out of the tree."""
    from volcano_topology.sdk.tree import TreeError

    a, b, c, d = sizes
    model = fat_tree(pods=a, leaves=b, spines=c, cores=d, hosts=2) if kind == "fat" else rail_optimised(a, b + 1, c, d)
    switches = sorted(model.switches)
    for k, (i, j) in enumerate(extra):
        model.hosts[f"X{k}"] = sorted({switches[i % len(switches)], switches[j % len(switches)]})
    for i, j in cross:
        one, two = switches[i % len(switches)], switches[j % len(switches)]
        if one != two and (one, two) not in model.cables and (two, one) not in model.cables:
            model.cables.append((one, two))
    answers = to_ufm(model)
    fabric = parse_fabric(answers.ports, answers.links, answers.systems)
    try:
        built = build_tree(fabric, make_settings())
        found = {h.name: h for h in built.tree.build()}
    except (UFMDataError, TreeError):
        return
    assert_strict_tree(found)
    assert sorted(leaf_of(found)) == sorted(built.hosts.nodes.values())


def test_cross_links_between_leaves_are_ignored() -> None:
    model = two_tier(leaves=2, spines=1, hosts=1)
    model.cables.append(("LEAF-0", "LEAF-1"))
    fabric = parse_fabric(*(getattr(to_ufm(model), k) for k in ("ports", "links", "systems")))
    built = build_tree(fabric, make_settings())
    assert built.ignored_links == 1
    assert by_tier({h.name: h for h in built.tree.build()}) == {1: ["leaf-0", "leaf-1"], 2: ["spine-0"]}


def test_leaves_cabled_in_a_ring_are_refused() -> None:
    """README: a leaf cabled to two or more other leaves cannot be told from a spine with hosts."""
    model = two_tier(leaves=3, spines=1, hosts=2)
    model.cables += [("LEAF-0", "LEAF-1"), ("LEAF-1", "LEAF-2"), ("LEAF-0", "LEAF-2")]
    with pytest.raises(UFMDataError, match="no leaf switch"):
        hypernodes(to_ufm(model))


def test_a_leaf_without_any_host_port_is_not_taken_for_a_core() -> None:
    model = two_tier(leaves=2, spines=2, hosts=1)
    model.switches.append("LEAF-EMPTY")
    model.cables += [("LEAF-EMPTY", "SPINE-0"), ("LEAF-EMPTY", "SPINE-1")]
    fabric = parse_fabric(*(getattr(to_ufm(model), k) for k in ("ports", "links", "systems")))
    built = build_tree(fabric, make_settings())
    assert built.hostless == ["LEAF-EMPTY"]
    assert sorted(by_tier({h.name: h for h in built.tree.build()})) == [1, 2]


def test_the_cores_above_a_single_pod_are_left_out() -> None:
    """They look exactly like leaves without hosts; the tree ends at the pod's spines."""
    fabric = _fabric(to_ufm(fat_tree(pods=1, leaves=2, spines=2, cores=2, hosts=1)))
    built = build_tree(fabric, make_settings())
    assert built.hostless == ["CORE-0", "CORE-1"]
    tiers = by_tier({h.name: h for h in built.tree.build()})
    assert sorted(tiers) == [1, 2] and len(tiers[2]) == 1


def test_a_leaf_whose_hosts_have_no_name_is_still_a_leaf() -> None:
    """Its hosts are skipped (counted), and it stays at tier 1 rather than rising above the spines."""
    model = two_tier(leaves=2, spines=1, hosts=1)
    model.switches.append("LEAF-2")
    model.cables.append(("LEAF-2", "SPINE-0"))
    model.hosts["NONAME"] = ["LEAF-2"]
    answers = to_ufm(model)
    for port in answers.ports:
        if port.get("system_name") == "NONAME":
            del port["system_name"], port["systemID"]
            port["node_description"] = "MT4123 ConnectX6   Mellanox Technologies"
    fabric = _fabric(answers)
    assert fabric.skipped["host port without a host name"] == 1
    built = build_tree(fabric, make_settings())
    assert "LEAF-2" in built.leaves and built.hostless == []
    assert by_tier({h.name: h for h in built.tree.build()}) == {1: ["leaf-0", "leaf-1"], 2: ["spine-0"]}


# -- names ---------------------------------------------------------------------------------------


def test_switch_names_are_sanitised_and_made_unique_by_guid() -> None:
    model = two_tier(leaves=2, spines=1, hosts=1)
    model.switches = ["Spine_0", "leaf-0", "LEAF_0"]
    model.cables = [("leaf-0", "Spine_0"), ("LEAF_0", "Spine_0")]
    model.hosts = {"GPU-000": ["leaf-0"], "GPU-100": ["LEAF_0"]}
    found = hypernodes(to_ufm(model))
    tiers = by_tier(found)
    assert tiers[2] == ["spine-0"]
    assert len(tiers[1]) == 2 and all(n.startswith("leaf-0-") for n in tiers[1])  # hashed by GUID: both kept
    assert hypernodes(to_ufm(model)).keys() == found.keys()


def test_name_prefix() -> None:
    found = hypernodes(to_ufm(two_tier(leaves=1, spines=1, hosts=1)), namePrefix="ufm-")
    assert sorted(found) == ["ufm-leaf-0", "ufm-spine-0"]


def test_switch_ids_fit_with_the_prefix() -> None:
    from volcano_topology_ufm.parse import System

    long = System("00000000000000aa", "X" * 80, "switch")
    nameless = System("00000000000000bb", "___", "switch")
    ids = switch_ids({long.guid: long, nameless.guid: nameless}, "prefix-")
    assert len("prefix-" + ids[long.guid]) <= 63 and ids[long.guid].startswith("xxxx")
    assert ids[nameless.guid].startswith("switch-")


def _shuffled(answers: UFMAnswers, seed: int) -> UFMAnswers:
    rng = random.Random(seed)
    lists = [copy.deepcopy(x) for x in (answers.ports, answers.links, answers.systems)]
    for items in lists:
        rng.shuffle(items)
    return UFMAnswers(*lists)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["fat", "rails"]),
    a=st.integers(1, 3),
    b=st.integers(1, 3),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**32),
    dropped=st.sets(st.integers(0, 40), max_size=5),
)
def test_any_fabric_gives_a_strict_tree_whatever_the_order(
    kind: str, a: int, b: int, c: int, seed: int, dropped: set[int]
) -> None:
    """Invariants: strict tree, every mapped host in exactly one leaf, names independent of input order."""
    model: Model = (
        fat_tree(pods=a, leaves=b, spines=c, cores=2, hosts=2) if kind == "fat" else rail_optimised(a, b + 1, c, 1)
    )
    hosts = sorted(model.hosts)
    excluded = [hosts[i].lower() for i in dropped if i < len(hosts) and len(hosts) > 1][: len(hosts) - 1]
    extra = {"nodeNames": {"exclude": excluded}}
    answers = to_ufm(model)
    found = hypernodes(answers, **extra)
    assert_strict_tree(found)
    assert sorted(leaf_of(found)) == sorted(h.lower() for h in hosts if h.lower() not in excluded)
    assert {n: h.model_dump() for n, h in hypernodes(_shuffled(answers, seed), **extra).items()} == {
        n: h.model_dump() for n, h in found.items()
    }
    if kind == "fat" and a > 1:
        assert max(by_tier(found)) == 3


# -- lenient parsing --------------------------------------------------------------------------------


def test_fields_missing_or_spelled_otherwise_are_read_from_their_fallbacks() -> None:
    answers = to_ufm(two_tier(leaves=2, spines=1, hosts=1))
    reference = hypernodes(answers)
    for port in answers.ports:
        if port["description"] == "Computer IB Port":
            del port["peer_guid"], port["peer_node_guid"]  # the switch by name only
            del port["system_name"]  # the host from its system
            port["systemID"] = "0x" + port["systemID"].upper()
    for link in answers.links:
        del link["source_guid"]  # the switch from "<name>:<port>"
    answers.ports.insert(0, "not an object")  # type: ignore[arg-type]
    answers.systems.append({"description": "no guid at all"})
    wrapped = UFMAnswers({"data": answers.ports}, {"data": answers.links}, answers.systems)  # type: ignore[arg-type]
    assert {n: h.model_dump() for n, h in hypernodes(wrapped).items()} == {
        n: h.model_dump() for n, h in reference.items()
    }


def test_a_switch_found_by_name_even_when_a_host_has_the_same_name() -> None:
    answers = to_ufm(two_tier(leaves=1, spines=1, hosts=1))
    for port in answers.ports:
        port.pop("peer_guid"), port.pop("peer_node_guid")
    answers.systems.append({"guid": "00000000000000ee", "system_name": "LEAF-0", "type": "host"})
    assert member_names(hypernodes(answers)["leaf-0"]) == ["gpu-000"]


def test_host_name_from_the_node_description_when_nothing_else_names_it() -> None:
    answers = to_ufm(two_tier(leaves=1, spines=1, hosts=1))
    for port in answers.ports:
        if port["description"] == "Computer IB Port":
            del port["system_name"], port["systemID"]
    assert member_names(hypernodes(answers)["leaf-0"]) == ["gpu-000"]


@pytest.mark.parametrize(
    "placeholder",
    [
        "MT4123 ConnectX6   Mellanox Technologies",
        "MT4129 ConnectX7",
        "ConnectX-6 Mellanox Technologies",
        "0C42A10300280000",
    ],
)
def test_an_adapter_without_a_description_has_no_host_name(placeholder: str) -> None:
    """UFM names such an adapter by what it is, or by its GUID: never a host (nor a node) of that name."""
    answers = to_ufm(two_tier(leaves=2, spines=1, hosts=1))
    for port in answers.ports:
        if port.get("system_name") == "GPU-100":
            port["system_name"] = placeholder
            port["node_description"] = placeholder
            del port["systemID"]
    fabric = _fabric(answers)
    assert fabric.hosts == {"GPU-000"}
    assert fabric.skipped["host port without a host name"] == 1


def test_a_host_whose_name_starts_like_an_adapter_model_is_still_a_host() -> None:
    """Only the node description names it ("mtl-gpu-01 mlx5_0"): the host is mtl-gpu-01."""
    model = two_tier(leaves=2, spines=1, hosts=1)
    model.hosts = {"mtl-gpu-01": ["LEAF-0"], "mt1": ["LEAF-0"], "mt4123": ["LEAF-1"], "connectx-lab": ["LEAF-1"]}
    answers = to_ufm(model)
    for port in answers.ports:
        if port["description"] == "Computer IB Port":
            del port["system_name"], port["systemID"]
    assert member_names(hypernodes(answers)["leaf-0"]) == ["mt1", "mtl-gpu-01"]
    assert member_names(hypernodes(answers)["leaf-1"]) == ["connectx-lab", "mt4123"]


def test_odd_elements_are_counted() -> None:
    answers = to_ufm(two_tier(leaves=1, spines=1, hosts=2))
    answers.ports.append({"description": "Computer IB Port", "system_name": "LONELY", "tier": 1})  # not cabled
    answers.ports.append({"description": "Computer IB Port", "node_description": "MT4123 ConnectX6   Mellanox",
                          "peer_node_name": "LEAF-0"})  # fmt: skip
    host = next(s["guid"] for s in answers.systems if s["system_name"] == "GPU-001")
    answers.ports.append({"description": "Computer IB Port", "system_name": "BACK-TO-BACK", "peer_guid": host,
                          "peer_node_name": "GPU-001"})  # fmt: skip
    answers.ports.append("not an object")  # type: ignore[arg-type]
    answers.links.append(7)  # type: ignore[arg-type]
    answers.systems += [None, {"system_name": "NO-GUID", "type": "switch"}]  # type: ignore[list-item]
    fabric = parse_fabric(answers.ports, answers.links, answers.systems)
    assert fabric.skipped["ports element that is not an object"] == 1
    assert fabric.skipped["links element that is not an object"] == 1
    assert fabric.skipped["systems element that is not an object"] == 1
    assert fabric.skipped["system without a GUID"] == 1
    assert fabric.skipped["host port without a peer (not cabled, or down)"] == 1
    assert fabric.skipped["host port without a host name"] == 1
    assert fabric.skipped["host port whose peer is not a switch"] == 1
    assert "LONELY" not in fabric.hosts and "BACK-TO-BACK" not in fabric.hosts


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"error": "x"}, "ports: expected a JSON list, got a JSON object"),
        ("text", "ports: expected a JSON list, got a JSON string"),
        (None, "ports: expected a JSON list, got a JSON null"),
    ],
)
def test_an_answer_that_is_not_a_list_is_refused(document: Any, message: str) -> None:
    with pytest.raises(UFMDataError, match=message):
        elements(document, "ports")


def test_a_paginated_answer_holding_one_page_of_several_is_refused() -> None:
    assert elements({"data": [1, 2], "total": 2}, "links") == [1, 2]
    with pytest.raises(UFMDataError, match="partial answer: links holds 2 of 5 elements"):
        elements({"data": [1, 2], "total_count": 5}, "links")


# -- partial answers ---------------------------------------------------------------------------------


def _fabric(answers: UFMAnswers) -> Any:
    return parse_fabric(answers.ports, answers.links, answers.systems)


def test_empty_answers_are_refused() -> None:
    answers = to_ufm(two_tier())
    with pytest.raises(UFMDataError, match="ports: no host port cabled to a switch"):
        check_complete(_fabric(UFMAnswers([], answers.links, answers.systems)))
    with pytest.raises(UFMDataError, match="systems: no switch in the answer"):
        check_complete(_fabric(UFMAnswers(answers.ports, answers.links, [])))


def test_a_host_on_a_switch_missing_from_systems_is_refused() -> None:
    answers = to_ufm(two_tier(leaves=3, spines=1, hosts=2))
    answers.systems = [s for s in answers.systems if s["system_name"] != "LEAF-2"]
    with pytest.raises(UFMDataError, match=r"partial answer: 2 host\(s\) have ports on a switch that systems does"):
        check_complete(_fabric(answers))


def test_links_missing_are_refused_unless_allowed() -> None:
    answers = to_ufm(two_tier(leaves=2, spines=1, hosts=1))
    answers.links = []
    fabric = _fabric(answers)
    check_complete(fabric)
    with pytest.raises(UFMDataError, match="links has no switch-to-switch link"):
        build_tree(fabric, make_settings())
    built = build_tree(fabric, make_settings(allowIsolatedLeaves=True))
    assert by_tier({h.name: h for h in built.tree.build()}) == {1: ["leaf-0", "leaf-1"]}


def test_a_leaf_without_uplinks_is_refused() -> None:
    answers = to_ufm(two_tier(leaves=3, spines=1, hosts=1))
    leaf2 = next(s["guid"] for s in answers.systems if s["system_name"] == "LEAF-2")
    answers.links = [k for k in answers.links if leaf2 not in (k["source_guid"], k["destination_guid"])]
    with pytest.raises(UFMDataError, match=r"1 leaf switch\(es\) have no uplink in links \(LEAF-2\)"):
        build_tree(_fabric(answers), make_settings())


def test_a_single_leaf_fabric_needs_no_links() -> None:
    answers = to_ufm(two_tier(leaves=1, spines=1, hosts=2))
    answers.links = []
    assert by_tier(hypernodes(answers)) == {1: ["leaf-0"]}


def test_host_drop_beyond_the_threshold_is_refused() -> None:
    check_host_drop(None, 1, 0.3)
    check_host_drop(100, 70, 0.3)
    with pytest.raises(UFMDataError, match="69 hosts, 100 in the last good scan"):
        check_host_drop(100, 69, 0.3)
    check_host_drop(100, 0, 1.0)


# -- node names ------------------------------------------------------------------------------------


def test_node_names_mapping_and_unmapped_hosts() -> None:
    model = two_tier(leaves=1, spines=1, hosts=3)
    model.hosts["mgmt-1"] = ["LEAF-0"]
    model.hosts["weird host"] = ["LEAF-0"]
    fabric = _fabric(to_ufm(model))
    mapping = {"regex": r"gpu-(?P<n>\d+)|weird host", "template": "node-{n}", "exclude": ["mgmt-.*"]}
    built = build_tree(fabric, make_settings(nodeNames=mapping))
    assert built.hosts.nodes == {"GPU-000": "node-000", "GPU-001": "node-001", "GPU-002": "node-002"}
    assert built.hosts.excluded == {"mgmt-1"}
    assert list(built.hosts.unmapped) == ["weird host"]
    assert "not a valid node name" in built.hosts.unmapped["weird host"]
    (leaf,) = [h for h in built.tree.build() if h.name == "leaf-0"]
    assert member_names(leaf) == ["node-000", "node-001", "node-002"]


def test_node_names_mapping_is_the_shared_one() -> None:
    assert make_settings().node_names == NodeNameMapping()
    assert (
        json.loads(make_settings(nodeNames={"case": "preserve"}).model_dump_json(by_alias=True))["nodeNames"]["case"]
        == "preserve"
    )


# -- whatever UFM sends, the pure step raises UFMDataError or TreeError, nothing else ------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from([
    "description", "system_name", "peer_node_name", "peer_guid", "peer_node_guid", "systemID", "tier", "guid",
    "system_guid", "name", "type", "ports", "source_guid", "destination_guid", "node_description", "groups",
    "source_port_node_description", "destination_port_node_description",
])  # fmt: skip
_element = st.dictionaries(_keys, _json | st.sampled_from(["Computer IB Port", "switch", "host", "LEAF-0", "1c34"]))


@settings(max_examples=150, deadline=None)
@given(
    ports=st.lists(_element, max_size=6) | _json,
    links=st.lists(_element, max_size=4) | _json,
    systems=st.lists(_element, max_size=4) | _json,
)
def test_garbage_in_is_a_clear_error_or_a_tree(ports: Any, links: Any, systems: Any) -> None:
    from volcano_topology.sdk.tree import TreeError

    try:
        fabric = parse_fabric(ports, links, systems)
        check_complete(fabric)
        built = build_tree(fabric, make_settings(allowIsolatedLeaves=True))
        found = {h.name: h for h in built.tree.build()}
    except (UFMDataError, TreeError):
        return
    assert_strict_tree(found)


def test_garbage_mixed_into_a_real_answer_is_skipped() -> None:
    answers = to_ufm(two_tier(leaves=2, spines=1, hosts=1))
    reference = hypernodes(answers)
    answers.ports += [None, 1, [], {"description": 5, "system_name": ["x"]}, {"tier": "1"}]  # type: ignore[list-item]
    answers.links += [{"source_guid": {}, "destination_guid": None}, "x"]  # type: ignore[list-item]
    answers.systems += [{"guid": True}, {"guid": "zz-not-hex"}, {"guid": 12, "type": 3}]
    assert {n: h.model_dump() for n, h in hypernodes(answers).items()} == {
        n: h.model_dump() for n, h in reference.items()
    }
