"""crds/ stays schema-identical to Volcano's published CRD (descriptions aside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from volcano_topology import kube

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "volcano-hypernode-crd.reference.yaml"


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def test_crd_is_schema_identical_to_volcano() -> None:
    ours = yaml.safe_load((ROOT / "crds" / kube.CRD_FILE).read_text())
    volcano = yaml.safe_load(REFERENCE.read_text())
    assert without_descriptions(ours["spec"]) == without_descriptions(volcano["spec"])
    assert ours["metadata"]["name"] == volcano["metadata"]["name"] == kube.CRD_NAME


def test_packaged_crd_is_the_one_in_crds() -> None:
    assert kube.crd_manifest() == yaml.safe_load((ROOT / "crds" / kube.CRD_FILE).read_text())


def test_crd_declares_what_users_rely_on() -> None:
    spec = kube.crd_manifest()["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["shortNames"]) == ("topology.volcano.sh", "Cluster", ["hn"])
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Tier", "TierName", "NodeCount", "Age"]
    selector = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["members"]["items"][
        "properties"
    ]["selector"]
    assert len(selector["x-kubernetes-validations"]) == 2
