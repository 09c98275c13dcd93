"""The example provider through the test kit: offline, then through the real writer on a real API server."""

from __future__ import annotations

from volcano_topology_example.provider import ExampleProvider, ExampleSettings

from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.provider import EventType
from volcano_topology.testing import assert_no_problems, assert_strict_tree, run_offline, run_on_cluster


def provider() -> ExampleProvider:
    return ExampleProvider(ExampleSettings(interval=60, leaves=3, nodes_per_leaf=2, prefix="kit"))


def test_offline_sends_leaves_then_the_spine() -> None:
    result = run_offline(provider(), "example")
    assert [(e.type, e.target) for e in result.events] == [
        (EventType.CREATE, "kit-leaf-0"),
        (EventType.CREATE, "kit-leaf-1"),
        (EventType.CREATE, "kit-leaf-2"),
        (EventType.CREATE, "kit-spine"),
    ]
    assert result.names == ["kit-leaf-0", "kit-leaf-1", "kit-leaf-2", "kit-spine"]
    assert_no_problems(result)
    assert_strict_tree(result)


def test_applied_by_the_real_writer(vt_control_plane: LocalControlPlane) -> None:
    result = run_on_cluster(vt_control_plane, provider(), "example-kit", until=lambda owned: len(owned) == 4)
    assert result.names == ["kit-leaf-0", "kit-leaf-1", "kit-leaf-2", "kit-spine"]
    assert result.members("kit-spine") == ["kit-leaf-0", "kit-leaf-1", "kit-leaf-2"]
    assert result.members("kit-leaf-1") == ["kit-node-1-0", "kit-node-1-1"]
    assert result.objects["kit-spine"]["metadata"]["labels"]["volcano.sh/network-topology-source"] == "example-kit"
    assert_no_problems(result)
    assert_strict_tree(result)
