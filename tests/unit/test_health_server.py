"""The health server's liveness checks and its address, without a cluster."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from volcano_topology.controller import ConfigSource, Controller
from volcano_topology.controlplane.cluster import free_port
from volcano_topology.observability import HealthPortUnavailable, HealthServer


def health(tmp_path: Path, port: int, **kwargs: Any) -> HealthServer:
    controller = Controller(client.ApiClient(client.Configuration()), ConfigSource.parse(str(tmp_path / "c"), None))
    return HealthServer(controller, lambda: False, lambda: True, port, host="127.0.0.1", **kwargs)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_healthz_names_each_failing_liveness_check(tmp_path: Path) -> None:
    state = {"renewing": True}

    def broken() -> bool:
        raise RuntimeError("bug in a check")

    port = free_port()
    server = health(tmp_path, port, liveness={"leader election renewing": lambda: state["renewing"]})
    await server.start()
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        status, body = await asyncio.to_thread(get, url)
        assert (status, body["status"], body["checks"]) == (200, "ok", {"leader election renewing": True})
        state["renewing"] = False
        server.add_liveness_check("writer making progress", lambda: True)
        status, body = await asyncio.to_thread(get, url)
        assert (status, body["status"], body["failing"]) == (503, "failing", ["leader election renewing"])
        assert body["checks"] == {"leader election renewing": False, "writer making progress": True}
        server.add_liveness_check("writer making progress", broken)
        state["renewing"] = True
        status, body = await asyncio.to_thread(get, url)
        assert (status, body["failing"]) == (503, ["writer making progress"]), "a check that raises fails"
    finally:
        await server.stop()


async def test_a_port_in_use_is_an_error_naming_the_address_and_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HealthPortUnavailable, match=f"127.0.0.1:{port}"):
            await health(tmp_path, port).start()


async def test_a_writer_that_makes_no_progress_fails_readiness_and_a_stuck_one_liveness(tmp_path: Path) -> None:
    from volcano_topology.provider import Event
    from volcano_topology.writer import Writer, WriterSettings

    port = free_port()
    server = health(tmp_path, port)
    server.leader = lambda: True
    controller = server.controller
    controller.leading = True
    controller.writer = Writer(None, WriterSettings(stall_after=60.0, stuck_after=600.0))  # type: ignore[arg-type]
    channel = controller.writer.open("fabric")
    server.add_liveness_check("writers not stuck", controller.writers_alive)
    await server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        status, body = await asyncio.to_thread(get, f"{base}/readyz")
        assert body["checks"]["writers making progress"] is True
        channel.events.put_nowait(Event.delete("x"))
        channel.last_progress -= 61  # work waiting, and no batch finished for over a minute
        status, body = await asyncio.to_thread(get, f"{base}/readyz")
        assert status == 503 and body["checks"]["writers making progress"] is False
        assert any("provider fabric: 1 event(s) waiting" in e for e in body["errors"].values())
        assert (await asyncio.to_thread(get, f"{base}/healthz"))[0] == 200, "slow is not dead"
        channel.busy_since = channel.last_progress - 600  # inside one batch for over ten minutes
        status, body = await asyncio.to_thread(get, f"{base}/healthz")
        assert (status, body["failing"]) == (503, ["writers not stuck"])
    finally:
        await server.stop()
