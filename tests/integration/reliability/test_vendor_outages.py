"""Vendor outages (issue 13, item 4): the real operator process runs the ufm and ibnetdiscover providers.

UFM is a loopback HTTPS server (providers/ufm/tests/ufm_testlib.py: the field names and shapes of the
real samples) and the ibnetdiscover dump is the real director.txt, in a file the provider reads at every
scan. First a good scan lands; then each bad answer in turn: UFM answering 500, empty lists, JSON cut
short (whole HTTP answer, and a connection cut mid-body), an HTML error page, a body above
maxResponseBytes (declared, and streamed without a length); the dump cut short mid-block (mid-line, at a
line end, at a block boundary). After each: nothing deleted or written (every owned object byte for byte
as it was, resourceVersion included), the failure counted (scan_failures_total, the UFM provider's
scan_failures gauge, its other gauges still the last good scan's) and named in the log. Then the vendor
recovers with a changed fabric, which lands. Bystanders are compared byte for byte.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.operator_harness import OperatorProcess, write_config
from tests.integration.reliability.conftest import Bystanders, Figures, scaled, seed_bystanders
from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.controlplane.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "providers" / "ufm" / "tests"))  # ufm_testlib: the loopback UFM and fabric models
from ufm_testlib import BASIC, Canned, FakeUFM, Model, fat_tree, to_ufm  # noqa: E402
from volcano_topology_ufm.build import build_tree  # noqa: E402
from volcano_topology_ufm.parse import parse_fabric  # noqa: E402
from volcano_topology_ufm.settings import UFMSettings  # noqa: E402

DIRECTOR = ROOT / "tests" / "data" / "fixtures" / "ibnetdiscover" / "director.txt"
M = "volcano_topology_"
LIMIT = scaled(1 << 20, 100 << 20)  # maxResponseBytes: 1 MiB at the fast size, the default (100 MiB) at full
FABRIC = scaled(
    {"pods": 2, "leaves": 2, "spines": 2, "cores": 2, "hosts": 3},
    {"pods": 4, "leaves": 8, "spines": 4, "cores": 4, "hosts": 8},
)
CUTS = scaled(1, 8)  # random mid-block cuts of the dump, besides the three fixed ones


@dataclass
class Vendors:
    operator: OperatorProcess
    ufm: FakeUFM
    dump: Path
    api: client.ApiClient
    bystanders: Bystanders
    log_offset: int = 0

    def objects(self, source: str) -> dict[str, str]:
        """Each owned object as canonical JSON (metadata and spec and status: byte for byte)."""
        return {n: json.dumps(o, sort_keys=True) for n, o in cluster_hypernodes(self.api, source).items()}

    def metric(self, name: str, **labels: str) -> float:
        return self.operator.metric(M + name, **labels)

    def new_log(self) -> str:
        text = self.operator.log.read_text(errors="replace")
        return text[self.log_offset :]

    def mark_log(self) -> None:
        self.log_offset = len(self.operator.log.read_text(errors="replace"))


def cluster_hypernodes(api: client.ApiClient, source: str) -> dict[str, dict[str, Any]]:
    """The HyperNodes this operator's provider ``source`` owns (both ownership labels: not Volcano's own ufm)."""
    selector = ",".join(f"{k}={v}" for k, v in ownership.ownership_labels(source).items())
    items: Any = client.CustomObjectsApi(api).list_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector=selector
    )
    return {i["metadata"]["name"]: i for i in items["items"]}


def write_dump(path: Path, text: str) -> None:
    spare = path.with_suffix(".new")
    spare.write_text(text)
    spare.replace(path)  # the provider reads the whole old or the whole new one, never a half-written file


def ufm_model() -> Model:
    return fat_tree(**FABRIC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("vendor-pki"))


@pytest.fixture(scope="module")
def vendors(
    control_plane: LocalControlPlane, hypernode_api: client.ApiClient, pki: Pki,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Vendors]:  # fmt: skip
    work = tmp_path_factory.mktemp("vendor-outages")
    bystanders = seed_bystanders(hypernode_api)
    core = client.CoreV1Api(hypernode_api)
    secret = {"metadata": {"name": "vendor-ufm-credentials"},
              "stringData": {k: v.decode() for k, v in BASIC.items()}}  # fmt: skip
    core.create_namespaced_secret("default", secret)
    dump = work / "director.txt"
    write_dump(dump, DIRECTOR.read_text())
    with FakeUFM(to_ufm(ufm_model()), cert=(pki.serving_cert, pki.serving_key)) as ufm:
        config = write_config(work / "config.yaml", [
            {"source": "ufm", "interval": "0.5s",
             "credentials": {"secretRef": {"name": "vendor-ufm-credentials", "namespace": "default"}},
             "config": {"endpoint": ufm.endpoint, "caBundle": str(pki.ca_cert), "retries": 1,
                        "retryBackoff": "0.05s", "retryBackoffMax": "0.1s", "timeout": "10s",
                        "maxResponseBytes": LIMIT}},
            {"source": "ibnetdiscover", "interval": "1s", "config": {"file": str(dump)}},
        ])  # fmt: skip
        operator = OperatorProcess(control_plane.kubeconfig, work, config=config, identity="vendor-op").start()
        found = Vendors(operator, ufm, dump, hypernode_api, bystanders)
        try:
            yield found
        finally:
            operator.stop(signal.SIGTERM)
            objects = client.CustomObjectsApi(hypernode_api)
            for source in ("ufm", "ibnetdiscover"):
                for name in cluster_hypernodes(hypernode_api, source):
                    objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
            core.delete_namespaced_secret("vendor-ufm-credentials", "default")


def settled(vendors: Vendors, source: str, count: int) -> dict[str, str]:
    """The source's objects once there are ``count`` of them, each Synced, and nothing moves for a while."""

    def synced() -> bool:
        objects = cluster_hypernodes(vendors.api, source)
        return len(objects) == count and all(
            any(c["type"] == "Synced" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions", []))
            for o in objects.values()
        )

    vendors.operator.wait(synced, within=180, what=f"{count} synced {source} HyperNodes")
    before = vendors.objects(source)
    time.sleep(1.5)
    assert vendors.objects(source) == before, "the good state still moves"
    return before


def ufm_count(model: Model) -> int:
    """How many HyperNodes the provider builds from the model (its own parser and builder, offline)."""
    answers = to_ufm(model)
    built = build_tree(parse_fabric(answers.ports, answers.links, answers.systems), UFMSettings(endpoint="ufm"))
    return len(built.tree.build())


UFM_COUNT = ufm_count(fat_tree(**FABRIC))
IB_COUNT = 160  # HyperNodes of director.txt (providers/ibnetdiscover tests)


def good_ufm(vendors: Vendors) -> None:
    vendors.ufm.serve(to_ufm(ufm_model()))


def ufm_faults() -> dict[str, tuple[Callable[[FakeUFM], None], str]]:
    """Fault name -> (how the loopback UFM answers, what the operator's log then says)."""

    def on_ports(canned: Canned) -> Callable[[FakeUFM], None]:
        return lambda ufm: ufm.set("resources/ports", canned)

    def huge(length: bool) -> Callable[[FakeUFM], None]:
        def inject(ufm: FakeUFM) -> None:  # built when injected: 100 MiB at the full size
            body = b"[" + b'{"x": 1},' * (LIMIT // 9 + 1024) + b'{"x": 1}]'
            ufm.set("resources/ports", Canned(200, body, json_type, length=length))

        return inject

    def empty(ufm: FakeUFM) -> None:
        for resource in ("ports", "links", "systems"):
            ufm.set(f"resources/{resource}", Canned(200, b"[]", json_type))

    good_ports = to_ufm(ufm_model()).bodies()["ports"]
    json_type = {"Content-Type": "application/json"}
    return {
        "http-500": (
            on_ports(Canned(500, b'{"error": "Internal Server Error"}', json_type)),
            "HTTP 500 (after 2 attempts)",
        ),
        "empty-lists": (empty, "no switch in the answer"),
        "empty-ports": (on_ports(Canned(200, b"[]", json_type)), "no host port cabled to a switch"),
        "truncated-json": (on_ports(Canned(200, good_ports[: len(good_ports) // 2], json_type)), "is not JSON"),
        "connection-cut": (on_ports(Canned(200, good_ports, json_type, cut_after=len(good_ports) // 2)), "cut off"),
        "html-error-page": (
            on_ports(Canned(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"})),
            "UFM answered an HTML page",
        ),
        "huge-body": (huge(True), "above maxResponseBytes"),
        "huge-body-streamed": (huge(False), "above maxResponseBytes"),
    }


UFM_FAULTS = list(ufm_faults())


def ib_cuts() -> dict[str, str]:
    """Fault name -> the dump cut short somewhere inside a node block."""
    text = DIRECTOR.read_text()
    blocks = [i for i in range(len(text)) if text.startswith("\n\nvendid=", i)]
    middle = blocks[len(blocks) // 2]
    inside = text.index("\n[", middle + 2)  # a port line of that block
    cuts = {
        "mid-line": text[: inside + 12],
        "at-a-line-end": text[: text.index("\n", inside + 2) + 1],
        "at-a-block-boundary": text[: middle + 1],
    }
    rng = random.Random(13)
    for n in range(CUTS):
        cut = rng.randrange(len(text) // 10, len(text) - 10)
        cuts[f"random-{n}-at-{cut}"] = text[:cut]
    return cuts


IB_CUTS = list(ib_cuts())


def test_a_good_scan_lands_first(vendors: Vendors, figures: Figures) -> None:
    ufm = settled(vendors, "ufm", UFM_COUNT)
    ib = settled(vendors, "ibnetdiscover", IB_COUNT)
    assert vendors.metric("scan_failures_total", provider="ufm") == 0
    assert vendors.metric("scan_failures_total", provider="ibnetdiscover") == 0
    assert vendors.metric("provider_mapped_hosts", provider="ufm") == len(ufm_model().hosts)
    figures.record(trials=1, faults_injected=0, objects_checked=len(ufm) + len(ib), lost=0,
                   ufm_objects=len(ufm), ibnetdiscover_objects=len(ib))  # fmt: skip


def outage(vendors: Vendors, source: str, count: int, inject: Callable[[], None], restore: Callable[[], None],
           says: str, figures: Figures, fault: str) -> None:  # fmt: skip
    before = settled(vendors, source, count)
    gauges = {k: vendors.metric(f"provider_{k}", provider=source) for k in ("mapped_hosts", "leaf_switches")}
    writes = vendors.metric("writes_total", provider=source)
    failed = vendors.metric("scan_failures_total", provider=source)
    vendors.mark_log()
    inject()
    try:
        vendors.operator.wait(lambda: vendors.metric("scan_failures_total", provider=source) >= failed + 2,
                              within=60, what=f"{fault}: two failed scans")  # fmt: skip
        after = vendors.objects(source)
        scans_failed = vendors.metric("scan_failures_total", provider=source) - failed
        values = {k: vendors.metric(f"provider_{k}", provider=source) for k in gauges}
        logged = says in vendors.new_log()
        deleted = len(set(before) - set(after))
        changed = sorted(n for n in before if n in after and after[n] != before[n])
        figures.record(
            trials=1, faults_injected=1, fault=fault, source=source, scans_failed=int(scans_failed),
            objects_checked=len(before), deleted=deleted, changed=len(changed), lost=deleted,
            writes=int(vendors.metric("writes_total", provider=source) - writes),
            scan_failures_gauge=vendors.metric("provider_scan_failures", provider=source) if source == "ufm" else None,
            gauges=values, logged=logged, bystanders_checked=vendors.bystanders.check(),
        )  # fmt: skip
    finally:
        restore()
    assert deleted == 0 and changed == [], f"{fault}: deleted {set(before) - set(after)}, changed {changed}"
    assert after == before
    assert vendors.metric("writes_total", provider=source) == writes, f"{fault}: something was written"
    assert values == gauges, f"{fault}: the gauges are no longer the last good scan's"
    assert logged, f"{fault}: the log does not say {says!r}:\n{vendors.new_log()[-3000:]}"
    if source == "ufm":
        assert vendors.metric("provider_scan_failures", provider="ufm") >= failed + 2


@pytest.mark.parametrize("fault", UFM_FAULTS)
def test_ufm_outage_keeps_the_last_good_state(vendors: Vendors, fault: str, figures: Figures) -> None:
    inject, says = ufm_faults()[fault]
    outage(vendors, "ufm", UFM_COUNT, lambda: inject(vendors.ufm), lambda: good_ufm(vendors), says, figures, fault)


@pytest.mark.parametrize("cut", IB_CUTS)
def test_ibnetdiscover_dump_cut_mid_block_keeps_the_last_good_state(
    vendors: Vendors, cut: str, figures: Figures
) -> None:
    text = ib_cuts()[cut]
    outage(
        vendors, "ibnetdiscover", IB_COUNT, lambda: write_dump(vendors.dump, text),
        lambda: write_dump(vendors.dump, DIRECTOR.read_text()), "ParseError: line ", figures, cut,
    )  # fmt: skip


def test_the_vendor_recovers_and_a_changed_fabric_lands(vendors: Vendors, figures: Figures) -> None:
    model = ufm_model()
    leaf = next(iter(sorted(model.leaves())))
    model.hosts["GPU-NEW-00"] = [leaf]
    vendors.ufm.serve(to_ufm(model))
    vendors.operator.wait(
        lambda: any("gpu-new-00" in json.dumps(o["spec"]) for o in cluster_hypernodes(vendors.api, "ufm").values()),
        within=60, what="the recovered fabric's new host",
    )  # fmt: skip
    deletes = vendors.metric("writes_total", provider="ufm", verb="delete") + vendors.metric(
        "writes_total", provider="ibnetdiscover", verb="delete"
    )
    settled(vendors, "ibnetdiscover", IB_COUNT)
    figures.record(trials=1, faults_injected=0, objects_checked=UFM_COUNT + IB_COUNT, deleted=int(deletes), lost=0,
                   bystanders_checked=vendors.bystanders.check())  # fmt: skip
    assert deletes == 0, "a HyperNode was deleted during the outages"
    good_ufm(vendors)
