"""How long the ibnetdiscover provider takes to parse (and build) a dump: director.txt and a generated ~3 MB one.

    .venv/bin/python bench/ibnetdiscover_parse.py [--runs N]

Prints the median and the minimum of N runs (default 15) of ``parse(text)`` and of the whole scan
minus I/O (``parse`` + ``layout`` + ``TreeBuilder.build()``). The generated dump is a three-tier
fat tree written by ``volcano_topology_ibnetdiscover.synthetic`` (16 pods of 24 leaves, 16 hosts of
one HCA per leaf, 12 spines per pod, 12 cores), with CRLF line ends like director.txt.
Results and the machine are recorded in bench/ibnetdiscover_parse.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from volcano_topology_ibnetdiscover.build import layout
from volcano_topology_ibnetdiscover.parse import parse
from volcano_topology_ibnetdiscover.synthetic import fat_tree, render, render_blocks

from volcano_topology.sdk.hostnames import NodeNameMapping

DIRECTOR = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures" / "ibnetdiscover" / "director.txt"


def generated() -> str:
    fabric = fat_tree(pods=16, leaves_per_pod=24, spines_per_pod=12, cores=12, hosts_per_leaf=16)
    return render(render_blocks(fabric), crlf=True)


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    fn()  # warm up (imports, regex caches)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), min(samples)


def scan(text: str) -> int:
    return len(layout(parse(text), NodeNameMapping()).tree.build())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    dumps = {"generated": generated()}
    if DIRECTOR.is_file():
        dumps = {"director.txt": DIRECTOR.read_bytes().decode("utf-8"), **dumps}
    else:
        print(f"(skipping director.txt: not found at {DIRECTOR})")
    print(f"{runs} runs each; seconds")
    print(f"{'dump':<14}{'MB':>6}{'lines':>8}{'nodes':>7}{'HNs':>6}", end="")
    print(f"  {'parse median':>12}{'min':>8}  {'scan median':>12}{'min':>8}")
    for name, text in dumps.items():
        fabric = parse(text)
        parse_median, parse_min = timed(functools.partial(parse, text), runs)
        scan_median, scan_min = timed(functools.partial(scan, text), runs)
        print(
            f"{name:<14}{len(text.encode()) / 1e6:>6.2f}{text.count(chr(10)) + 1:>8}{len(fabric.nodes):>7}"
            f"{scan(text):>6}  {parse_median:>12.3f}{parse_min:>8.3f}  {scan_median:>12.3f}{scan_min:>8.3f}"
        )


if __name__ == "__main__":
    main()
