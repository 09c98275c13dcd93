"""nodeCount follows only what a HyperNode's selectors read of the Node view.

The Node view stamps what each change touched (the set of names, each label key); a HyperNode's
count is keyed by the stamps of just its inputs. Over random Node changes and random selectors:
whenever those stamps did not move, the count did not move either (so skipping the recount is
never wrong), and a change is reported only for what it touched (so unrelated changes cost nothing).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client

from volcano_topology.api import HyperNode
from volcano_topology.hypernodecache import HyperNodeCache, Seen
from volcano_topology.kube import ClusterClient
from volcano_topology.nodewatch import Changes, NodeCache
from volcano_topology.status import count_inputs, node_count
from volcano_topology.statuswriter import StatusWriter

NAMES = ["n1", "n2", "n3", "m1"]
KEYS = ["rack", "zone", "gpu"]
VALUES = ["x", "y"]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
op_st = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(NAMES), labels_st),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.just({})),
    st.tuples(st.just("replace"), st.just(""), st.dictionaries(st.sampled_from(NAMES), labels_st, max_size=4)),
)
expression_st = st.fixed_dictionaries({
    "key": st.sampled_from(KEYS), "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
}).map(lambda e: {**e, "values": ["x"]} if e["operator"] in ("In", "NotIn") else e)  # fmt: skip
label_selector_st = st.builds(
    lambda labels, expressions: {"labelMatch": {"matchLabels": labels, "matchExpressions": expressions}},
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
    st.lists(expression_st, max_size=2),
)
selector_st = st.one_of(
    st.builds(lambda n: {"exactMatch": {"name": n}}, st.sampled_from(NAMES)),
    st.builds(lambda p: {"regexMatch": {"pattern": p}}, st.sampled_from(["^n", "1$", "m"])),
    label_selector_st,
)


def hypernode(name: str, selectors: list[dict[str, Any]]) -> HyperNode:
    return HyperNode.model_validate({
        "metadata": {"name": name},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": s} for s in selectors]},
    })  # fmt: skip


def apply(view: NodeCache, op: tuple[str, str, Any]) -> bool:
    """What the reflector does: apply on the loop, and bump the generation when the view changed."""
    kind, name, value = op
    changed = (view.put(name, value) if kind == "put" else view.delete(name, "1") if kind == "delete"
               else view.replace(dict(value), "1"))  # fmt: skip
    if changed:
        view.generation += 1
    return changed


def touched(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> tuple[bool, set[str]]:
    keys = {k for n in before.keys() | after.keys() for k in before.get(n, {}).keys() | after.get(n, {}).keys()
            if before.get(n, {}).get(k) != after.get(n, {}).get(k)}  # fmt: skip
    return before.keys() != after.keys(), keys


@settings(max_examples=500, deadline=None)
@given(st.lists(op_st, min_size=1, max_size=25), st.lists(st.lists(selector_st, min_size=1, max_size=3),
                                                          min_size=1, max_size=4))  # fmt: skip
def test_an_unmoved_input_version_means_an_unmoved_count(ops: list[Any], selector_sets: list[Any]) -> None:
    view = NodeCache(client.ApiClient(client.Configuration()))
    apply(view, ("replace", "", {}))  # the first LIST
    hypernodes = [hypernode(f"h{i}", s) for i, s in enumerate(selector_sets)]
    last = {h.name: (view.inputs_version(*count_inputs(h)), node_count(h, view.labels())) for h in hypernodes}
    history: list[tuple[int, dict[str, dict[str, str]]]] = [(view.generation, {})]
    for op in ops:
        apply(view, op)
        now = {n: dict(labels) for n, labels in view.labels().items()}
        history.append((view.generation, now))
        for h in hypernodes:
            version, count = view.inputs_version(*count_inputs(h)), node_count(h, view.labels())
            if version == last[h.name][0]:
                assert count == last[h.name][1], f"{h.name}: inputs unchanged but the count moved"
            last[h.name] = (version, count)
        # What changes_since(g) reports is exactly what the changes after g touched.
        for generation, _before in history:
            steps = [state for g, state in history if g >= generation]
            names, keys = False, set()
            for a, b in itertools.pairwise(steps):
                n, k = touched(a, b)
                names, keys = names or n, keys | k
            changes = view.changes_since(generation)
            assert changes.names == names and changes.keys == keys, (generation, changes, names, keys)


def test_what_a_selector_reads() -> None:
    assert count_inputs(hypernode("s", [{"exactMatch": {"name": "leaf-0"}}])) == (False, frozenset())
    assert count_inputs(hypernode("r", [{"regexMatch": {"pattern": "^gpu"}}])) == (True, frozenset())
    expressions = [{"key": "zone", "operator": "Exists"}]
    by_label = hypernode("l", [{"labelMatch": {"matchLabels": {"rack": "a"}, "matchExpressions": expressions}}])
    assert count_inputs(by_label) == (True, frozenset({"rack", "zone"}))


def seen(name: str, selector: dict[str, Any]) -> Seen:
    return Seen.from_dict({
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "5", "generation": 1,
                     "labels": {"topology.volcano.sh/source": "fabric"}},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": selector}]},
    })  # fmt: skip


def test_a_node_change_marks_only_the_hypernodes_whose_selectors_read_it() -> None:
    api = client.ApiClient(client.Configuration())
    nodes = NodeCache(api)
    apply(nodes, ("replace", "", {"n1": {"rack": "a"}, "n2": {"rack": "b"}}))
    writer = StatusWriter(HyperNodeCache(api), nodes, ClusterClient(api), lambda: None)
    exact, regex = seen("exact", {"exactMatch": {"name": "n1"}}), seen("regex", {"regexMatch": {"pattern": "^n"}})
    rack = seen("rack", {"labelMatch": {"matchLabels": {"rack": "a"}}})
    assert [writer._node_count(s) for s in (exact, regex, rack)] == [1, 2, 1]
    counted = writer.stats.counts
    writer._wake.clear()

    assert writer.nodes_changed(Changes(names=False, keys=frozenset({"unrelated"}))) == 0
    assert not writer._wake.is_set() and not writer._dirty, "a label no selector reads wakes nobody"
    assert writer.nodes_changed(Changes(names=False, keys=frozenset({"rack"}))) == 1
    assert writer._dirty == {"rack"}
    writer._dirty.clear()
    assert writer.nodes_changed(Changes(names=True, keys=frozenset())) == 2
    assert writer._dirty == {"regex", "rack"}, "a Node added or deleted never concerns exactMatch members"

    # The counts themselves: a label no selector reads recounts nothing, one it reads recounts only its readers.
    apply(nodes, ("put", "n2", {"rack": "b", "unrelated": "1"}))
    assert [writer._node_count(s) for s in (exact, regex, rack)] == [1, 2, 1]
    assert writer.stats.counts == counted
    apply(nodes, ("put", "n2", {"rack": "a", "unrelated": "1"}))
    assert [writer._node_count(s) for s in (exact, regex, rack)] == [1, 2, 2]
    assert writer.stats.counts == counted + 1
    apply(nodes, ("delete", "n1", {}))
    assert [writer._node_count(s) for s in (exact, regex, rack)] == [1, 1, 1]
    assert writer.stats.counts == counted + 3, "exactMatch counts its name, whether or not the Node exists"


def test_a_deleted_hypernode_is_no_longer_a_reader() -> None:
    api = client.ApiClient(client.Configuration())
    nodes = NodeCache(api)
    apply(nodes, ("replace", "", {"n1": {"rack": "a"}}))
    writer = StatusWriter(HyperNodeCache(api), nodes, ClusterClient(api), lambda: None)
    rack = seen("rack", {"labelMatch": {"matchLabels": {"rack": "a"}}})
    writer._node_count(rack)
    writer.seen(rack, deleted=True)
    assert writer.nodes_changed(Changes(names=True, keys=frozenset({"rack"}))) == 0
    assert not writer._readers_of_key and not writer._readers_of_names
