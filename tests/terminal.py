"""Run a command with some of its output on a pseudo-terminal, to test what the CLI does on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Mapping, Sequence


def run_on_terminal(
    command: Sequence[str],
    *,
    stdin: bytes | None = None,
    stdout_on_terminal: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Standard error (and with ``stdout_on_terminal`` standard output) on a pty; the rest piped.

    Returns the finished process (its ``stdout`` when piped) and everything written to the terminal.
    """
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            list(command), input=stdin, stdout=terminal if stdout_on_terminal else subprocess.PIPE,
            stderr=terminal, timeout=timeout, env=None if env is None else dict(env),
        )  # fmt: skip
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
    return done, seen
