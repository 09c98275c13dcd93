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
