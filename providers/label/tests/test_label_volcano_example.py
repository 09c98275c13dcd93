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
