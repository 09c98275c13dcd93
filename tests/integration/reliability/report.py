"""The reliability figures as the table in docs/reliability.md.

    python -m tests.integration.reliability.report [figures.jsonl]

Reads the JSON lines the suite's ``figures`` fixture wrote (default
``test-artifacts/reliability/figures.jsonl``) and prints one Markdown row per scenario: the
common figures in columns (trials, faults injected, objects checked, anything lost), the
scenario's own figures after them. The last line for a scenario wins (a run that was repeated).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMMON = ["trials", "faults_injected", "objects_checked", "lost"]
SHOWN = {"scenario", "mode", "passed", "seconds", "expected_failure", *COMMON}
DEFAULT = Path(__file__).resolve().parents[3] / "test-artifacts" / "reliability" / "figures.jsonl"


def load(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            found[row["scenario"]] = row
    return found


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))[:80]
    return str(value)


def result(row: dict[str, Any]) -> str:
    if row.get("expected_failure"):
        return "known gap (xfail)"
    return "passed" if row.get("passed") else "**FAILED**"


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = ["scenario", "mode", "result", "seconds", *COMMON, "other figures"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, row in rows.items():
        others = {k: v for k, v in row.items() if k not in SHOWN}
        lines.append("| " + " | ".join([
            f"`{scenario}`", row.get("mode", ""), result(row),
            cell(row.get("seconds", "")), *(cell(row.get(k, "")) for k in COMMON),
            ", ".join(f"{k} {cell(v)}" for k, v in sorted(others.items())),
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(table(load(Path(args[0]) if args else DEFAULT)))


if __name__ == "__main__":
    main()
