"""The README's main command: `volcano-topology dev` brings up everything, prints the tree, cleans up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from volcano_topology.controlplane.cluster import free_port


def test_dev_mode_prints_the_tree_and_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "volcano_topology.cli", "dev", "--workdir", str(workdir), "--model", "tiny-8",
         "--interval", "1s", "--health-port", str(free_port()), "--once"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "CRD installed; 8 emulated Nodes from model tiny-8" in out
    assert "--- HyperNodes (3; first tree after" in out
    assert "spine-0  (tier 2 spine)" in out
    assert "└── leaf-1  (tier 1 leaf; 4 nodes: node5, node6, node7, … node8)" in out
    assert "stopping kube-apiserver and etcd" in out
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout.split()
    assert left == [], "every process dev started is gone"
    print(f"dev mode: first tree and clean exit in {took:.1f}s")
