"""Volcano's own example ConfigMap for its label source, exactly as Volcano documents it, through this provider."""
# ruff: noqa: W291, E501  (the ConfigMap below is copied byte for byte, its long lines and a trailing blank included)

from __future__ import annotations

import yaml
from volcano_topology_label import LabelSettings, analyse

from volcano_topology.config import Configuration
from volcano_topology.discover import provider_config
from volcano_topology.tree import tree_problems

# Copied verbatim from volcano-sh/volcano, docs/user-guide/how_to_use_hypernode_auto_discovery.md
# ("Example ConfigMap"), commit 0e965704806bd5dc9e499ed767131f30430d7424.
VOLCANO_EXAMPLE_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: volcano-controller-configmap
  namespace: volcano-system # Replace with your Volcano namespace if Volcano is not installed in the default namespace.
data:
  volcano-controller.conf: |
    networkTopologyDiscovery:
      - source: ufm
        enabled: true
        interval: 10m
        credentials:
          secretRef:
            name: ufm-credentials # Replace with the secret name that stores the UFM credentials.
            namespace: volcano-system #Replace with the secret namespace that stores the UFM credentials.
        config:
          endpoint: https://ufm-server:8080
          insecureSkipVerify: true
      - source: roce
        enabled: false
        interval: 15m
        config:
          endpoint: https://roce-server:9090
      - source: label
        enabled: true
        config:
          networkTopologyTypes:
            topologyA2:
              - nodeLabel: "volcano.sh/tor" # The label that indicates which tor a node belongs to. If the values corresponding to this label on different nodes are the same, it means these nodes belong to the same tor. 
              - nodeLabel: "kubernetes.io/hostname" # A standard label automatically added to each node in a Kubernetes cluster, used to identify the hostname of the node.
            topologyA3:
              - nodeLabel: "volcano.sh/hypercluster" # The label that indicates which hypercluster a node belongs to. If the values corresponding to this label on different nodes are the same, it means these nodes belong to the same hypercluster.
              - nodeLabel: "volcano.sh/hypernode" # The label that indicates which hypernode a node belongs to. If the values corresponding to this label on different nodes are the same, it means these nodes belong to the same hypernode.
              - nodeLabel: "kubernetes.io/hostname" # A standard label automatically added to each node in a Kubernetes cluster, used to identify the hostname of the node.
"""

# The same document's example cluster: 8 nodes, hypernodes s0..s3 under hyperclusters s4 and s5.
VOLCANO_EXAMPLE_NODES = {
    f"node{i}": {
        "kubernetes.io/hostname": f"192.168.1.{10 + i}",
        "volcano.sh/hypernode": f"s{i // 2}",
        "volcano.sh/hypercluster": f"s{4 + i // 4}",
    }
    for i in range(8)
}


def volcano_conf() -> str:
    configmap = yaml.safe_load(VOLCANO_EXAMPLE_CONFIGMAP)
    conf: str = configmap["data"]["volcano-controller.conf"]
    return conf


def test_volcanos_example_configuration_is_accepted_unchanged() -> None:
    settings = LabelSettings.model_validate(provider_config(volcano_conf(), "label"))
    assert list(settings.network_topology_types) == ["topologyA2", "topologyA3"]
    assert settings.tiers("topologyA3") == ["volcano.sh/hypercluster", "volcano.sh/hypernode"]
    assert settings.tiers("topologyA2") == ["volcano.sh/tor"]
    # ... and the operator's configuration model reads the whole discovery list as Volcano wrote it.
    entries = Configuration.model_validate(yaml.safe_load(volcano_conf())).network_topology_discovery
    assert [e.source for e in entries] == ["ufm", "roce", "label"]


def test_volcanos_example_cluster_gives_volcanos_tree_with_readable_names() -> None:
    settings = LabelSettings.model_validate(provider_config(volcano_conf(), "label"))
    tors = {f"a2-{i}": {"kubernetes.io/hostname": f"a2-{i}", "volcano.sh/tor": f"tor{i // 2}"} for i in range(4)}
    built = analyse({**VOLCANO_EXAMPLE_NODES, **tors}, settings)
    found = {h.name: h for h in built.hypernodes}
    assert tree_problems(found) == []

    def members(name: str) -> list[str]:
        return [m.selector.exact_match.name for m in found[name].members if m.selector and m.selector.exact_match]

    assert sorted(found) == [
        "topologya2-tor0", "topologya2-tor1",
        "topologya3-s0", "topologya3-s1", "topologya3-s2", "topologya3-s3", "topologya3-s4", "topologya3-s5",
    ]  # fmt: skip
    assert members("topologya3-s4") == ["topologya3-s0", "topologya3-s1"]
    assert members("topologya3-s5") == ["topologya3-s2", "topologya3-s3"]
    assert members("topologya3-s0") == ["node0", "node1"]  # members are Node names, not the hostname label's value
    assert members("topologya2-tor1") == ["a2-2", "a2-3"]
    spec = found["topologya3-s4"].spec
    assert spec is not None and (spec.tier, spec.tier_name) == (2, "volcano.sh/hypercluster")
    spec = found["topologya2-tor0"].spec
    assert spec is not None and (spec.tier, spec.tier_name) == (1, "volcano.sh/tor")
    assert found["topologya3-s2"].metadata.labels == {"volcano.sh/hypernode": "s2"}
    assert built.missing_level == set() and built.several_types == set()


# Copied verbatim from the same file and commit ("Mixed topology profiles"): Volcano's profile form.
VOLCANO_MIXED_PROFILES = """\
networkTopologyDiscovery:
  - source: label
    enabled: true
    config:
      networkTopologyTypes:
        topologyShallow:
          nodeSelector:
            matchLabels:
              volcano.sh/network-topology-profile: shallow
          levels:
            - nodeLabel: volcano.sh/shallow-cluster
              tierName: volcano.sh/hypercluster
            - nodeLabel: volcano.sh/shallow-hypernode
              tierName: volcano.sh/hypernode
            - nodeLabel: kubernetes.io/hostname
        topologyDeep:
          nodeSelector:
            matchLabels:
              volcano.sh/network-topology-profile: deep
          levels:
            - nodeLabel: volcano.sh/deep-cluster
              tierName: volcano.sh/hypercluster
            - nodeLabel: volcano.sh/deep-hypernode
              tierName: volcano.sh/hypernode
            - nodeLabel: volcano.sh/deep-superpod
              tierName: volcano.sh/superpod
            - nodeLabel: kubernetes.io/hostname
"""

PROFILE = "volcano.sh/network-topology-profile"


def test_volcanos_mixed_profiles_give_two_trees_of_different_depth_with_its_tier_names() -> None:
    settings = LabelSettings.model_validate(provider_config(VOLCANO_MIXED_PROFILES, "label"))
    nodes = {
        **{f"sh{i}": {PROFILE: "shallow", "volcano.sh/shallow-cluster": "c1", "volcano.sh/shallow-hypernode": f"h{i // 2}"}
           for i in range(4)},
        **{f"dp{i}": {PROFILE: "deep", "volcano.sh/deep-cluster": "c1", "volcano.sh/deep-hypernode": "h0",
                      "volcano.sh/deep-superpod": f"sp{i // 2}"} for i in range(4)},
        # Selected by the deep profile but lacking its superpod label: a missing level (skipped by default).
        "dp-half": {PROFILE: "deep", "volcano.sh/deep-cluster": "c1", "volcano.sh/deep-hypernode": "h0"},
        # Shallow labels, but the deep profile selects it: the selector decides, as in Volcano.
        "dp-odd": {PROFILE: "deep", "volcano.sh/shallow-cluster": "c1", "volcano.sh/shallow-hypernode": "h0"},
        "no-profile": {"volcano.sh/shallow-cluster": "c1", "volcano.sh/shallow-hypernode": "h0"},
    }  # fmt: skip
    built = analyse(nodes, settings)
    found = {h.name: h for h in built.hypernodes}
    assert tree_problems(found) == []
    assert built.placed == {**{f"sh{i}": "topologyShallow" for i in range(4)},
                            **{f"dp{i}": "topologyDeep" for i in range(4)}}  # fmt: skip
    assert built.missing_level == {"dp-half", "dp-odd"} and built.outside == {"no-profile"}
    tiers = {name: (h.spec.tier, h.spec.tier_name) for name, h in found.items() if h.spec}
    assert tiers == {
        "topologyshallow-c1": (2, "volcano.sh/hypercluster"),
        # h0 is unique in the shallow tree but the deep tree has an h0 too: names start with the type.
        "topologyshallow-h0": (1, "volcano.sh/hypernode"),
        "topologyshallow-h1": (1, "volcano.sh/hypernode"),
        "topologydeep-c1": (3, "volcano.sh/hypercluster"),
        "topologydeep-h0": (2, "volcano.sh/hypernode"),
        "topologydeep-sp0": (1, "volcano.sh/superpod"),
        "topologydeep-sp1": (1, "volcano.sh/superpod"),
    }
    assert found["topologydeep-h0"].metadata.labels == {"volcano.sh/deep-hypernode": "h0", PROFILE: "topologydeep"}


def test_a_node_selected_by_two_profiles_joins_neither_and_is_counted() -> None:
    config = {"networkTopologyTypes": {
        "a": {"nodeSelector": {"matchLabels": {"gen": "x"}}, "levels": [{"nodeLabel": "rack"}, {"nodeLabel": "h"}]},
        "b": {"nodeSelector": {"matchLabels": {"site": "y"}}, "levels": [{"nodeLabel": "rack"}, {"nodeLabel": "h"}]},
    }}  # fmt: skip
    built = analyse({"both": {"gen": "x", "site": "y", "rack": "r1"}, "one": {"gen": "x", "rack": "r1"}},
                    LabelSettings.model_validate(config))  # fmt: skip
    assert built.skipped == {"both"} and built.several_types == {"both"}
    assert built.placed == {"one": "a"}
    assert [h.name for h in built.hypernodes] == ["a-r1"]
