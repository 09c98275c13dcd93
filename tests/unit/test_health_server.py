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
