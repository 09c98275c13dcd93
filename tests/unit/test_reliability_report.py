"""The reliability table: one row per scenario, the last line of a repeated one wins, failures stand out."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.reliability.report import load, table


def test_one_row_per_scenario_the_last_line_wins_and_a_failure_shows(tmp_path: Path) -> None:
    path = tmp_path / "figures.jsonl"
    lines = [
        {"scenario": "a.py::t", "mode": "fast", "passed": False, "seconds": 3.0, "trials": 1, "lost": 0},
        {"scenario": "b.py::u", "mode": "full", "passed": False, "seconds": 12.5, "lost": 2, "peak_rss_mib": 140.25},
        {"scenario": "a.py::t", "mode": "full", "passed": True, "seconds": 30.0, "trials": 10, "lost": 0},
        {"scenario": "c.py::gap", "mode": "full", "passed": False, "expected_failure": True, "seconds": 1.0},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = table(load(path)).splitlines()
    assert len(rows) == 5, "header, rule, one row per scenario"
    assert rows[2].startswith("| `a.py::t` | full | passed | 30.0 | 10 |")
    assert "**FAILED**" in rows[3] and "peak_rss_mib 140.2" in rows[3]
    assert "known gap (xfail)" in rows[4] and "expected_failure" not in rows[4]
