"""The watch-fed HyperNode cache: written through by our own writes, never rolled back by an older event.

A simulated API server (etcd revisions, an in-order watch stream delivered with any delay)
drives the cache's Reflector hooks directly; after every step the cache holds, for each name,
no version older than one it held before, and once the stream is drained it equals the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client

from volcano_topology.hypernodecache import HyperNodeCache, Seen, newer

NAMES = ["a", "b", "c"]


def obj(name: str, version: int, owner: str = "fabric", node: str = "n1") -> dict[str, Any]:
    return {
        "apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode",
        "metadata": {"name": name, "resourceVersion": str(version), "generation": version,
                     "labels": {"topology.volcano.sh/source": owner} if owner else {}},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": node}}}]},
    }  # fmt: skip


@dataclass
class Server:
    revision: int = 100
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (type, name, object)

    def write(self, name: str, who: str) -> dict[str, Any]:
        self.revision += 1
        kind = "MODIFIED" if name in self.objects else "ADDED"
        self.objects[name] = obj(name, self.revision, node=f"{who}{self.revision}")
        self.stream.append((kind, name, self.objects[name]))
        return self.objects[name]

    def delete(self, name: str) -> str:
        last = self.objects.pop(name)["metadata"]["resourceVersion"]
        self.revision += 1
        self.stream.append(("DELETED", name, obj(name, self.revision)))
        return str(last)


def new_cache() -> HyperNodeCache:
    cache = HyperNodeCache(client.ApiClient(client.Configuration()))
    assert cache.replace({}, "100")  # the first LIST: the view is synced even when empty
    cache.generation = 1
    return cache


def deliver(cache: HyperNodeCache, server: Server) -> None:
    kind, name, body = server.stream.pop(0)
    if kind == "DELETED":
        cache.delete(name, body["metadata"]["resourceVersion"])
    else:
        cache.put(name, Seen.from_dict(body))


steps = st.lists(
    st.tuples(
        st.sampled_from(["ours", "ours-late", "answer", "theirs", "delete", "deliver", "deliver"]),
        st.sampled_from(NAMES),
    ),
    max_size=40,
)


@settings(max_examples=1000, deadline=None)
@given(steps)
def test_the_cache_ends_equal_to_the_server_and_never_goes_back_in_time(script: list[tuple[str, str]]) -> None:
    server, cache = Server(), new_cache()
    held: dict[str, int] = {}
    late: list[dict[str, Any]] = []  # answers to our writes still on their way (a status write, say)
    for action, name in script:
        if action == "ours":
            cache.record(server.write(name, "ours"))  # write-through, before the watch echoes it
        elif action == "ours-late" and name in server.objects:
            late.append(server.write(name, "ours"))
        elif action == "answer" and late:
            cache.record(late.pop(0))
        elif action == "theirs":
            server.write(name, "theirs")  # someone else: only the watch tells
        elif action == "delete" and name in server.objects:
            cache.forget(name, server.delete(name))
        elif action == "deliver" and server.stream:
            deliver(cache, server)
        for item, seen in cache.items().items():
            version = int(seen.resource_version)
            assert version >= held.get(item, 0), f"{item} went back from {held[item]} to {version}"
            held[item] = version
    while server.stream or late:
        if server.stream:
            deliver(cache, server)
        if late:
            cache.record(late.pop(0))
    assert {n: s.resource_version for n, s in cache.items().items()} == {
        n: o["metadata"]["resourceVersion"] for n, o in server.objects.items()
    }


def test_only_changes_the_cache_did_not_know_reach_listeners() -> None:
    server, cache = Server(), new_cache()
    told: list[tuple[str, str, bool]] = []
    cache.subscribe(lambda seen, deleted: told.append((seen.observed.name, seen.resource_version, deleted)))
    cache.record(server.write("a", "ours"))
    server.write("b", "theirs")
    cache.forget("a", server.delete("a"))
    while server.stream:
        deliver(cache, server)
    assert told == [("b", "102", False)], "our own write and delete are no news; their create is"
    server.delete("b")
    deliver(cache, server)
    assert told[-1] == ("b", "102", True), "a deletion is told with the last version (its owner label)"


def test_a_relist_keeps_what_we_wrote_after_it_and_tells_what_changed() -> None:
    server, cache = Server(), new_cache()
    cache.record(server.write("a", "ours"))  # 101
    server.write("b", "theirs")  # 102, never delivered: the watch expired (410)
    listed = {n: Seen.from_dict(o) for n, o in server.objects.items()}
    mine = cache.record(server.write("c", "ours"))  # 103: written after the LIST was taken
    told: list[str] = []
    cache.subscribe(lambda seen, deleted: told.append(seen.observed.name))
    assert cache.replace(listed, "102")
    assert set(cache.items()) == {"a", "b", "c"} and cache.items()["c"] is mine
    assert told == ["b"]


def test_resource_versions_compare_as_revisions() -> None:
    assert newer("10", "9") and not newer("9", "10") and not newer("7", "7")
    assert newer("x2", "x1"), "a version that is not a number is newer whenever it differs"


def test_a_version_with_the_same_spec_is_not_parsed_again_and_managed_fields_are_not_kept() -> None:
    first = obj("a", 101)
    first["metadata"]["managedFields"] = [{"manager": "volcano-topology/fabric", "fieldsV1": {"f:spec": {}}}]
    held = Seen.from_dict(first)
    assert held.observed.hypernode is not None
    assert "managed_fields" not in (held.observed.hypernode.metadata.model_extra or {})
    assert held.observed.hypernode.metadata.model_extra == {}, "only name, labels and annotations are parsed"
    status_only = {**obj("a", 102), "status": {"nodeCount": 1}}
    assert Seen.from_dict(status_only, held).observed.hypernode is held.observed.hypernode
    moved = obj("a", 103, node="n2")
    again = Seen.from_dict(moved, held).observed.hypernode
    assert again is not held.observed.hypernode and again is not None and again.members[0].selector is not None
    assert again.members[0].selector.exact_match is not None and again.members[0].selector.exact_match.name == "n2"


def test_an_answer_to_our_own_write_reuses_what_was_sent_only_when_the_spec_is_the_same() -> None:
    sent = Seen.from_dict(obj("a", 1, node="n7")).observed.hypernode
    assert sent is not None and sent.spec is not None
    spec = sent.spec.to_dict()
    answer = Seen.from_dict(obj("a", 104, node="n7"), None, (sent, spec)).observed
    assert answer.hypernode is not None and answer.hypernode.spec is sent.spec
    assert answer.hypernode.metadata.labels == {"topology.volcano.sh/source": "fabric"}
    other = Seen.from_dict(obj("a", 105, node="n8"), None, (sent, spec)).observed
    assert other.hypernode is not None and other.hypernode.spec is not sent.spec, "a different answer is parsed"


def test_node_count_of_an_object_deleted_and_created_again_is_counted_again() -> None:
    from volcano_topology.kube import ClusterClient
    from volcano_topology.nodewatch import NodeCache
    from volcano_topology.statuswriter import StatusWriter

    api = client.ApiClient(client.Configuration())
    writer = StatusWriter(HyperNodeCache(api), NodeCache(api), ClusterClient(api), lambda: None)
    first = obj("x", 101)
    first["metadata"]["uid"] = "uid-1"
    again = obj("x", 101)  # the same generation and version numbers, another object
    again["metadata"]["uid"] = "uid-2"
    again["spec"]["members"].append({"type": "Node", "selector": {"exactMatch": {"name": "n9"}}})
    assert writer._node_count(Seen.from_dict(first)) == 1
    assert writer._node_count(Seen.from_dict(again)) == 2
