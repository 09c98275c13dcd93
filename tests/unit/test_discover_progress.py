"""`discover` shows a ticking progress line on a terminal, and nothing when its stderr is piped."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

CLI = [sys.executable, "-m", "volcano_topology.cli", "discover", "emulated", "--config", "{modelFile: small-64}"]


def test_progress_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(CLI, stdout=subprocess.PIPE, stderr=terminal, timeout=120)
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"\rdiscovering with emulated" in seen
    assert b"\r" not in done.stdout, "stdout (piped) carries only the HyperNodes"


def test_no_progress_when_piped() -> None:
    done = subprocess.run(CLI, capture_output=True, timeout=120)
    assert done.returncode == 0
    assert b"discovering with" not in done.stderr
    assert b"\r" not in done.stderr
