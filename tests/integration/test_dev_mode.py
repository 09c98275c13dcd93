"""The README's main command: `volcano-topology dev` brings up everything, prints the tree, cleans up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from volcano_topology.controlplane.cluster import free_port


def listening_on(port: int) -> set[str]:
    """Local addresses (hex, as the kernel lists them) with a TCP socket listening on ``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            found.add(address)
    return found


def test_dev_mode_prints_the_tree_and_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "dev"
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "volcano_topology.cli", "dev", "--workdir", str(workdir), "--model", "tiny-8",
         "--interval", "1s", "--health-port", str(port), "--once"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    addresses: set[str] = set()
    while proc.poll() is None and not addresses and time.monotonic() - started < 300:
        addresses = listening_on(port)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 0, out + err
    assert addresses == {"0100007F"}, "dev serves health and metrics on 127.0.0.1 only"
    assert "CRD installed; 8 emulated Nodes from model tiny-8" in out
    assert "--- HyperNodes (3; first tree after" in out
    assert "spine-0  (tier 2 spine)" in out
    assert "└── leaf-1  (tier 1 leaf; 4 nodes: node5, node6, node7, … node8)" in out
    assert "stopping kube-apiserver and etcd" in out
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout.split()
    assert left == [], "every process dev started is gone"
    print(f"dev mode: first tree and clean exit in {took:.1f}s")
