"""The scale benchmark's smoke run (issue 15) at 1,024 nodes: the harness works, rest costs nothing.

No timing assertions: it checks that every scenario reached exactly the desired state, that the
state the checker saw is what a fresh LIST shows, and that steady state and a restart write nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import fabrics
from bench.measure import HYPERNODES, seen_from
from bench.scenarios import Bench, Options

pytestmark = pytest.mark.integration


def test_bench_smoke_at_1024_nodes(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    options = Options(scenarios=("cold", "steady", "restart", "move-node"), move_reps=1)
    with Bench(tmp_path / "bench", options, records.append) as bench:
        bench.fat_tree(1024)
        assert bench.api is not None
        listed = bench.api.must("GET", HYPERNODES)["items"]
        final = fabrics.move_nodes(fabrics.fat_tree(1024), 1, offset=0)
        wanted = fabrics.desired(final, "emulated")
        seen = {i["metadata"]["name"]: seen_from(i) for i in listed}
        assert {n: s.spec for n, s in seen.items() if s.source == "emulated"} == {n: w.spec for n, w in wanted.items()}
        assert all(s.synced_generation == s.generation for s in seen.values()), "every object Synced at its generation"

    by = {r["scenario"]: r for r in records}
    assert set(by) == {"cold", "steady", "restart", "move-node"}
    assert all(r["converged"] for r in records), [(r["scenario"], r.get("note")) for r in records]
    assert by["cold"]["objects"] == len(wanted) == 35
    assert by["cold"]["hypernodeWrites"] >= len(wanted), "the cold sync created every object"
    assert by["steady"]["hypernodeWrites"] == 0, by["steady"]["requests"]
    assert by["steady"]["hypernodeLists"] == 0, by["steady"]["requests"]
    assert by["restart"]["hypernodeWrites"] == 0, by["restart"]["requests"]
    assert by["move-node"]["hypernodeWrites"] >= 2, "a move is at least a release and a claim"
    assert by["cold"]["operatorPeakRssMiB"] > 0 and by["cold"]["operatorCpuSeconds"] > 0


def test_requests_are_keyed_as_the_api_server_counts_them() -> None:
    from bench.kubehttp import APPLY, request_key
    from bench.measure import request_totals

    assert request_key("GET", HYPERNODES, None) == "LIST hypernodes"
    assert request_key("GET", HYPERNODES + "?watch=1&resourceVersion=5", None) == "WATCH hypernodes"
    assert request_key("PATCH", HYPERNODES + "/leaf-1/status?force=true", APPLY) == "APPLY hypernodes/status"
    assert request_key("DELETE", HYPERNODES + "?labelSelector=a%3Db", None) == "DELETECOLLECTION hypernodes"
    assert request_key("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/x", None) == "GET leases"
    assert request_key("GET", "/metrics", None) is None
    text = "\n".join([
        'apiserver_request_total{code="200",resource="hypernodes",scope="cluster",subresource="",verb="LIST"} 3',
        'apiserver_request_total{code="409",resource="hypernodes",scope="cluster",subresource="",verb="LIST"} 1',
        'apiserver_request_total{code="200",resource="hypernodes",scope="cluster",subresource="status",verb="APPLY"} 7',
        'apiserver_request_total{code="200",resource="",scope="",subresource="/metrics",verb="GET"} 9',
    ])  # fmt: skip
    assert dict(request_totals(text)) == {"LIST hypernodes": 4, "APPLY hypernodes/status": 7}


def test_the_checker_wants_spec_and_a_synced_status_of_the_current_generation() -> None:
    from bench.kubehttp import Api
    from bench.measure import Checker, Wanted

    checker = Checker(Api("127.0.0.1", 1, "token", "/nonexistent"))  # never started: no request is sent
    labels = {"volcano.sh/network-topology-source": "emulated", "app.kubernetes.io/managed-by": "volcano-topology"}

    def obj(generation: int, synced_at: int | None, tier: int = 1) -> dict[str, Any]:
        status = {"conditions": [{"type": "Synced", "status": "True", "observedGeneration": synced_at}]}
        return {"metadata": {"name": "leaf", "labels": labels, "generation": generation}, "spec": {"tier": tier},
                "status": status if synced_at is not None else {}}  # fmt: skip

    checker.expect({"leaf": Wanted("emulated", {"tier": 1})})
    assert checker.bad == {"leaf"} and checker.converged_at is None
    checker._apply("ADDED", obj(2, 1), 1.0)
    assert checker.bad == {"leaf"}, "status of an older generation"
    checker._apply("MODIFIED", obj(2, 2, tier=2), 2.0)
    assert checker.bad == {"leaf"}, "wrong spec"
    checker._apply("MODIFIED", obj(2, 2), 3.0)
    assert checker.bad == set() and checker.converged_at == 3.0
    checker._apply("ADDED", {**obj(1, 1), "metadata": {"name": "extra", "labels": labels, "generation": 1}}, 4.0)
    assert checker.bad == {"extra"} and checker.converged_at is None, "an owned object nobody wants"
