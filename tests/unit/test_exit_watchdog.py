"""Once shut down, the operator process ends within its grace even when a provider left a thread hanging."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import threading, time
from volcano_topology.operator import exit_within
threading.Thread(target=time.sleep, args=(3600,), name="pinned-by-a-provider").start()  # not a daemon
exit_within(0.5, 3)
"""


def test_a_hanging_thread_does_not_hold_the_exit() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "pinned-by-a-provider" in done.stderr, "the log names the thread left behind"


def test_without_a_hanging_thread_the_exit_is_the_normal_one() -> None:
    program = "from volcano_topology.operator import exit_within\nexit_within(30, 3)\n"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, "the watchdog only acts when the normal exit does not come"
