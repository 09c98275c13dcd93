"""Test helpers for the ufm provider: fabric models, their UFM-shaped JSON, a loopback UFM server, scan runners."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from volcano_topology_ufm.provider import UFMProvider

from volcano_topology.provider import Event, ProviderContext
from volcano_topology.runner import NoSecrets, StaticCluster

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "data" / "fixtures"  # a copy of ../shared/fixtures
USER, PASSWORD, TOKEN = "ufm-admin", "s3cret-Pa55word", "OGUY7TwLvTmFkXyTkcsEWD9KKNvq6f"
SECRETS = (PASSWORD, TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
BASIC = {"username": USER.encode(), "password": PASSWORD.encode()}
TOKEN_CREDS = {"token": TOKEN.encode()}


# -- fabric models ------------------------------------------------------------------------


@dataclass
class Model:
    """Switches, switch-to-switch cables, and each host's ports (one switch per HCA)."""

    switches: list[str] = field(default_factory=list)
    cables: list[tuple[str, str]] = field(default_factory=list)
    hosts: dict[str, list[str]] = field(default_factory=dict)

    def leaves(self) -> set[str]:
        return {s for homes in self.hosts.values() for s in homes}


def two_tier(leaves: int = 2, spines: int = 2, hosts: int = 2) -> Model:
    model = Model()
    model.switches = [f"SPINE-{s}" for s in range(spines)] + [f"LEAF-{n}" for n in range(leaves)]
    model.cables = [(f"LEAF-{n}", f"SPINE-{s}") for n in range(leaves) for s in range(spines)]
    model.hosts = {f"GPU-{n}{h:02d}": [f"LEAF-{n}"] for n in range(leaves) for h in range(hosts)}
    return model


def fat_tree(pods: int = 2, leaves: int = 2, spines: int = 2, cores: int = 2, hosts: int = 2) -> Model:
    """A 3-tier fat tree: leaves to every spine of their pod, every spine to every core."""
    model = Model()
    model.switches = [f"CORE-{c}" for c in range(cores)]
    for p in range(pods):
        model.switches += [f"SPINE-P{p}-{s}" for s in range(spines)] + [f"LEAF-P{p}-{n}" for n in range(leaves)]
        model.cables += [(f"LEAF-P{p}-{n}", f"SPINE-P{p}-{s}") for n in range(leaves) for s in range(spines)]
        model.cables += [(f"SPINE-P{p}-{s}", f"CORE-{c}") for s in range(spines) for c in range(cores)]
        for n in range(leaves):
            model.hosts.update({f"GPU-P{p}L{n}-{h:02d}": [f"LEAF-P{p}-{n}"] for h in range(hosts)})
    return model


def rail_optimised(sus: int = 2, rails: int = 8, hosts: int = 4, spines_per_rail: int = 1) -> Model:
    """Scalable units of ``hosts`` hosts with ``rails`` HCAs each, HCA r on the SU's rail-r leaf; rail-r spines."""
    model = Model()
    for r in range(rails):
        model.switches += [f"SPINE-R{r}-{k}" for k in range(spines_per_rail)]
    for u in range(sus):
        for r in range(rails):
            leaf = f"SU{u}-RAIL{r}"
            model.switches.append(leaf)
            model.cables += [(leaf, f"SPINE-R{r}-{k}") for k in range(spines_per_rail)]
        for h in range(hosts):
            model.hosts[f"DGX-SU{u}-{h:02d}"] = [f"SU{u}-RAIL{r}" for r in range(rails)]
    return model


def _guid(kind: int, index: int) -> str:
    return f"{kind:04x}a10300{index:06x}"


@dataclass
class UFMAnswers:
    ports: list[dict[str, Any]]
    links: list[dict[str, Any]]
    systems: list[dict[str, Any]]

    def bodies(self) -> dict[str, bytes]:
        return {k: json.dumps(getattr(self, k)).encode() for k in ("ports", "links", "systems")}


def to_ufm(model: Model) -> UFMAnswers:
    """The model as UFM answers it (field names and shapes of the real samples)."""
    switch_guid = {name: _guid(0x1C34, i) for i, name in enumerate(sorted(model.switches))}
    host_guid = {name: _guid(0x0C42, i) for i, name in enumerate(sorted(model.hosts))}
    next_port: dict[str, int] = {}
    ports: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    system_ports: dict[str, list[str]] = {g: [] for g in [*switch_guid.values(), *host_guid.values()]}

    def port(guid: str) -> int:
        next_port[guid] = next_port.get(guid, 0) + 1
        return next_port[guid]

    def link(src: str, src_name: str, sp: int, dst: str, dst_name: str, dp: int) -> None:
        links.append({
            "source_guid": src, "source_port": str(sp), "source_port_node_description": f"{src_name}:{sp}",
            "destination_guid": dst, "destination_port": str(dp),
            "destination_port_node_description": f"{dst_name}:{dp}",
            "name": f"{src}_{sp}:{dst}_{dp}", "severity": "Info", "width": "4x", "capabilities": [],
        })  # fmt: skip

    for a, b in sorted(model.cables):
        pa, pb = port(switch_guid[a]), port(switch_guid[b])
        link(switch_guid[a], a, pa, switch_guid[b], b, pb)
        for own, own_port, peer, peer_port in ((a, pa, b, pb), (b, pb, a, pa)):
            ports.append(_switch_port(switch_guid[own], own, own_port, switch_guid[peer], peer, peer_port))
            system_ports[switch_guid[own]].append(f"{switch_guid[own]}_{own_port}")
    for host in sorted(model.hosts):
        for hca, leaf in enumerate(model.hosts[host]):
            # Each HCA is its own IB node: the first one's GUID is the host system's.
            node = host_guid[host] if hca == 0 else _guid(0x0C43 + hca, sorted(model.hosts).index(host))
            lp = port(switch_guid[leaf])
            ports.append({
                "description": "Computer IB Port", "dname": f"HCA-{hca + 1}/1", "guid": node, "name": f"{node}_1",
                "node_description": f"{host} mlx5_{hca}", "number": 1, "external_number": 1, "lid": 100 + hca,
                "logical_state": "Active", "physical_state": "Link Up", "active_speed": "HDR", "mtu": 2048,
                "path": f"default / Computer: {host} / NA / HCA-{hca + 1}/1", "peer": f"{switch_guid[leaf]}_{lp}",
                "peer_guid": switch_guid[leaf], "peer_node_guid": switch_guid[leaf], "peer_node_name": leaf,
                "peer_node_description": f"{leaf}:{lp}", "peer_port_dname": str(lp), "severity": "Info",
                "systemID": host_guid[host], "system_name": host, "tier": 1, "capabilities": ["reset"],
            })  # fmt: skip
            ports.append(_switch_port(switch_guid[leaf], leaf, lp, node, host, 1, host_side=True))
            link(node, host, 1, switch_guid[leaf], leaf, lp)
            system_ports[host_guid[host]].append(f"{node}_1")
    systems = [
        _system(switch_guid[name], name, "switch", system_ports[switch_guid[name]]) for name in sorted(model.switches)
    ]
    systems += [_system(host_guid[name], name, "host", system_ports[host_guid[name]]) for name in sorted(model.hosts)]
    return UFMAnswers(ports, links, systems)


def _switch_port(guid: str, name: str, number: int, peer: str, peer_name: str, peer_port: int,
                 host_side: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "description": "Switch IB Port", "dname": str(number), "guid": guid, "name": f"{guid}_{number}",
        "node_description": f"{name}:{number}", "number": number, "peer": f"{peer}_{peer_port}", "peer_guid": peer,
        "peer_node_guid": peer, "peer_node_name": peer_name, "severity": "Info", "systemID": guid,
        "system_name": name, "tier": 4 if host_side else 3, "logical_state": "Active",
    }  # fmt: skip


def _system(guid: str, name: str, kind: str, ports: list[str]) -> dict[str, Any]:
    switch = kind == "switch"
    return {
        "guid": guid, "system_guid": guid, "name": guid, "system_name": name, "type": kind, "ports": ports,
        "description": "MQM8700" if switch else "server", "model": "MQM8700" if switch else "Computer",
        "role": "tor" if switch else "endpoint", "groups": ["Switches"] if switch else ["Servers"],
        "technology": "HDR" if switch else "Computer", "vendor": "Mellanox", "state": "active", "modules": [],
    }  # fmt: skip


def fixture_answers() -> UFMAnswers:
    folder = FIXTURES / "ufm"
    return UFMAnswers(*(json.loads((folder / f"{k}-sample.json").read_text()) for k in ("ports", "links", "systems")))


# -- a loopback UFM -----------------------------------------------------------------------


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut_after: int | None = None  # announce the whole body's length, send only this many bytes, close
    length: bool = True  # False: no Content-Length, the body ends when the connection closes
    trickle: float = 0.0  # send the body 16 bytes at a time, this many seconds apart (a slow or stalled UFM)


@dataclass
class Seen:
    path: str
    authorization: str | None


class FakeUFM:
    """A UFM REST API on 127.0.0.1 (HTTPS when given a certificate) answering the three resources.

    Basic auth is accepted under /ufmRest, token auth under /ufmRestV3, as UFM does.
    ``answers`` is the steady answer per resource; ``queue(resource, ...)`` answers the next requests first.
    """

    def __init__(self, answers: UFMAnswers | None = None, *, cert: tuple[Path, Path] | None = None,
                 user: str = USER, password: str = PASSWORD, token: str = TOKEN,
                 bind: str = "127.0.0.1") -> None:  # fmt: skip
        self.answers: dict[str, Canned] = {}
        self.pending: dict[str, deque[Canned]] = {}
        self.seen: list[Seen] = []
        self.trickled = 0  # pieces of trickled bodies sent so far
        self.basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.token = f"Basic {token}"
        self.lock = threading.Lock()
        if answers is not None:
            self.serve(answers)
        server = ThreadingHTTPServer((bind, 0), _handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.scheme = "https" if cert else "http"
        self.thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-ufm", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, answers: UFMAnswers) -> None:
        with self.lock:
            for resource, body in answers.bodies().items():
                self.answers[f"resources/{resource}"] = Canned(body=body, headers={"Content-Type": "application/json"})

    def set(self, resource: str, canned: Canned) -> None:
        with self.lock:
            self.answers[resource] = canned

    def queue(self, resource: str, *canned: Canned) -> None:
        with self.lock:
            self.pending.setdefault(resource, deque()).extend(canned)

    def requests_for(self, resource: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.endswith("/" + resource)]

    def next(self, resource: str) -> Canned | None:
        with self.lock:
            waiting = self.pending.get(resource)
            return waiting.popleft() if waiting else self.answers.get(resource)

    def __enter__(self) -> FakeUFM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(ufm: FakeUFM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            with ufm.lock:
                ufm.seen.append(Seen(self.path, authorization))
            prefix, _, resource = self.path.lstrip("/").partition("/")
            allowed = (prefix == "ufmRest" and authorization == ufm.basic) or (
                prefix == "ufmRestV3" and authorization == ufm.token
            )
            if not allowed:
                self._send(Canned(401, b'{"error": "Unauthorized"}', {"Content-Type": "application/json"}))
                return
            canned = ufm.next(resource)
            self._send(canned or Canned(404, b"<html>Not Found</html>", {"Content-Type": "text/html"}))

        def _send(self, canned: Canned) -> None:
            if canned.delay:
                time.sleep(canned.delay)
            try:
                self.send_response(canned.status)
                for key, value in canned.headers.items():
                    self.send_header(key, value)
                if canned.length:
                    self.send_header("Content-Length", str(len(canned.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if canned.cut_after is not None:
                    self.wfile.write(canned.body[: canned.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if canned.trickle:
                    for start in range(0, len(canned.body), 16):
                        self.wfile.write(canned.body[start : start + 16])
                        self.wfile.flush()
                        with ufm.lock:
                            ufm.trickled += 1
                        time.sleep(canned.trickle)
                    return
                self.wfile.write(canned.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True

    return Handler


# -- running the provider --------------------------------------------------------------------


def context(credentials: dict[str, bytes] | None = None, interval: float | None = None) -> ProviderContext:
    return ProviderContext("ufm", logging.getLogger("volcano_topology.provider.ufm"), StaticCluster({}), NoSecrets(),
                           interval=interval, credentials=dict(credentials or {}))  # fmt: skip


def run_scans(provider: UFMProvider, credentials: dict[str, bytes] | None,
              until: Callable[[UFMProvider, list[Event]], bool], *, interval: float = 0.05,
              within: float = 20.0) -> list[Event]:  # fmt: skip
    """Run the provider's real loop (ScanningProvider.start) until ``until(provider, events)`` holds."""

    async def go() -> list[Event]:
        events: asyncio.Queue[Event] = asyncio.Queue()
        replies: asyncio.Queue[Any] = asyncio.Queue()
        ctx = context(credentials, interval)
        task = asyncio.create_task(provider.start(events, replies, ctx))
        seen: list[Event] = []
        deadline = time.monotonic() + within
        try:
            while True:
                while not events.empty():
                    seen.append(events.get_nowait())
                if until(provider, seen):
                    return seen
                if task.done():
                    task.result()
                    raise AssertionError("the provider stopped")
                if time.monotonic() > deadline:
                    raise AssertionError(f"not reached within {within}s: {provider.stats}")
                await asyncio.sleep(0.01)
        finally:
            ctx.stopping.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await provider.stop()

    return asyncio.run(go())


def first_outcome(
    provider: UFMProvider, credentials: dict[str, bytes] | None = None
) -> tuple[Event | None, str | None]:
    """The first scan's SNAPSHOT, or the error it failed with."""
    events = run_scans(provider, credentials, lambda p, seen: bool(seen) or p.stats.failures > 0)
    return (events[0], None) if events else (None, provider.stats.last_error)


def tiers(event: Event) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for hn in event.hypernodes:
        assert hn.spec is not None
        out.setdefault(hn.spec.tier, []).append(hn.name)
    return {t: sorted(n) for t, n in sorted(out.items())}


def members(event: Event) -> dict[str, list[str]]:
    return {
        hn.name: sorted(m.selector.exact_match.name for m in hn.members if m.selector and m.selector.exact_match)
        for hn in event.hypernodes
    }


def iter_text(*items: Any) -> Iterator[str]:
    for item in items:
        yield item if isinstance(item, str) else repr(item)
