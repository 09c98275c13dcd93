"""The health server's port: taken is a clear error at start, not a retry loop."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.integration.operator_harness import OperatorProcess, write_config
from volcano_topology.controlplane.cluster import LocalControlPlane


def test_a_health_port_in_use_stops_the_operator_with_a_clear_error(
    control_plane: LocalControlPlane, tmp_path: Path
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = write_config(tmp_path / "c.yaml", [])
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path, config=config, port=port, extra=["--health-address", "127.0.0.1"]
    )
    try:
        operator.start()
        assert operator.process is not None
        started = time.monotonic()
        code = operator.process.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        operator.stop()
        taken.close()
    log = operator.tail(200)
    print(f"exited with {code} after {took:.1f}s; log:\n{log}")
    assert code != 0
    assert f"127.0.0.1:{port}" in log
    assert took < 15
