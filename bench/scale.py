"""Issue 15's scale benchmark: the operator against a real control plane, fat trees of 1,024 to 65,536 nodes.

    make bench                                   # everything (< 25 min on 2 cores)
    .venv/bin/python -m bench.scale --smoke      # 1,024 nodes, a few scenarios, about a minute
    .venv/bin/python -m bench.scale --sizes 16384 --scenarios cold,steady,move-node --profile cold

Writes bench/results/<UTC time>.json (raw), then bench/RESULTS.md and bench/scale.png from it
(``python -m bench.report FILE`` redoes those two from any raw file). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.operator_process import LEASE
from bench.scenarios import ALL, Bench, Options

HERE = Path(__file__).resolve().parent
SIZES = (1024, 4096, 16384, 65536)
SMOKE = ("cold", "steady", "restart", "move-node")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="fat-tree sizes in nodes, comma-separated")
    parser.add_argument("--scenarios", default=",".join(ALL), help=f"comma-separated, of: {', '.join(ALL)}")
    parser.add_argument("--smoke", action="store_true", help=f"1,024 nodes, scenarios {','.join(SMOKE)}")
    parser.add_argument("--move-reps", type=int, default=3, help="repetitions of the one-node move (median)")
    parser.add_argument(
        "--baseline-reps", type=int, default=2, help="repetitions of the baseline (up to 4,096 nodes; 1 above)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="the operator's and the baseline's concurrency")
    parser.add_argument("--lease", default=LEASE, help="failover: leaseDuration,renewDeadline,retryPeriod")
    parser.add_argument("--profile", default="", help="scenarios to run under py-spy (speedscope files in --out)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the raw results go")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite bench/RESULTS.md and scale.png")
    parser.add_argument("--workdir", type=Path, default=None, help="control planes and logs (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.scenarios = "1024", ",".join(SMOKE)
    unknown = set(args.scenarios.split(",")) - set(ALL)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    return args


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def run(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = tuple(args.scenarios.split(","))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    started = time.monotonic()
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    raw: dict[str, Any] = {
        "started": stamp,
        "command": " ".join(["python -m bench.scale", *sys.argv[1:]]),
        "commit": git("rev-parse", "HEAD"),
        "dirty": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()],
        "machine": report.machine(),
        "scenarios": list(scenarios),
        "results": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{stamp}.json"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vt-bench-"))

    def sink(record: dict[str, Any]) -> None:
        raw["results"].append(record)
        raw["totalSeconds"] = round(time.monotonic() - started, 1)
        out.write_text(json.dumps(raw, indent=1))

    def options(size: int) -> Options:
        return Options(scenarios=scenarios, move_reps=args.move_reps,
                       baseline_reps=args.baseline_reps if size <= 4096 else 1, concurrency=args.concurrency,
                       lease=args.lease,
                       profile=tuple(p for p in args.profile.split(",") if p), profile_dir=args.out)  # fmt: skip

    groups: list[tuple[str, int, str]] = [("fat_tree", size, f"fat-tree-{size}") for size in sizes]
    groups += [(g.replace("-", "_"), 4096, g) for g in ("four-providers", "rails") if g in scenarios]
    for method, size, label in groups:
        print(f"== {label} ({time.monotonic() - started:.0f}s into the run)", flush=True)
        with Bench(workdir / label, options(size), sink) as bench:
            getattr(bench, method)(size)
    raw["totalSeconds"] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(raw, indent=1))
    print(f"== done in {raw['totalSeconds']:.0f}s: {out}", flush=True)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return raw


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raw = run(args)
    if not args.no_report:
        report.write(raw, HERE / "RESULTS.md", HERE / "scale.png")


if __name__ == "__main__":
    main()
