"""`discover` shows a ticking progress line on a terminal, and nothing when its stderr is piped."""

from __future__ import annotations

import subprocess
import sys

from tests.terminal import run_on_terminal

CLI = [sys.executable, "-m", "volcano_topology.cli", "discover", "emulated", "--config", "{modelFile: small-64}"]


def test_progress_on_a_terminal() -> None:
    done, seen = run_on_terminal(CLI)
    assert done.returncode == 0
    assert b"\rdiscovering with emulated" in seen
    assert b"\r" not in done.stdout, "stdout (piped) carries only the HyperNodes"


def test_no_progress_when_piped() -> None:
    done = subprocess.run(CLI, capture_output=True, timeout=120)
    assert done.returncode == 0
    assert b"discovering with" not in done.stderr
    assert b"\r" not in done.stderr
