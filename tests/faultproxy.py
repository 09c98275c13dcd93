"""A TLS proxy in front of the real kube-apiserver that injects faults and counts requests.

Rules are tried in order; the first matching rule with uses left acts:

- ``forward``: forward untouched (a rule that lets ``times`` requests through before later rules);
- ``status``: answer with that HTTP status (and headers) without forwarding;
- ``reset``: drop the connection with a TCP reset, without forwarding;
- ``delay``: wait, then forward (longer than the client's timeout = a timeout);
- ``lost_answer``: forward (the server acts on it), then reset instead of answering;
- ``slow_answer``: forward (the server acts on it at once), then wait ``delay`` before answering;
- ``drip``: forward, then send the answer one byte every ``delay`` seconds (each read by the
  client succeeds, so only a total deadline ends it).

Waits and drips end early when :meth:`FaultProxy.release` (or ``reset``) is called, so no
proxy thread outlives a test by long. Everything else is forwarded untouched. ``requests``
records (method, path, status) of every request as the client saw it (0 for resets), with
monotonic times: when the proxy received it, forwarded it upstream, and got the server's answer.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Rule:
    method: str | None = None  # None: any
    path_contains: str = ""
    action: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "InternalError"
    delay: float = 0.0
    times: int = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path_contains in path and self.hits < self.times


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    name: str  # the object: from the body of a POST, else the last path segment
    received: float = 0.0  # time.monotonic() when the proxy had read the request
    forwarded: float | None = None  # when it was sent upstream (None: never forwarded)
    answered: float | None = None  # when the API server's answer came back to the proxy

    @property
    def dry_run(self) -> bool:
        """A server-side dry run (the operator's writer-fence check): admitted or not, nothing is written."""
        return "dryRun=" in self.path


def object_name(method: str, path: str, body: bytes | None) -> str:
    if method == "POST" and body:
        try:
            return str(json.loads(body).get("metadata", {}).get("name", ""))
        except (ValueError, AttributeError):
            return ""
    return path.split("?", 1)[0].rsplit("/", 1)[-1]


class FaultProxy:
    def __init__(self, upstream: str, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 443
        self.upstream_context = ssl.create_default_context(cafile=str(ca_file))
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        self.release()
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def release(self) -> None:
        """End every wait and drip in progress now (the rest of a dripped answer is sent at once)."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def writes(self, path_contains: str = "/hypernodes") -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.method in WRITE_METHODS and path_contains in r.path and not r.dry_run]

    def count(self, method: str, path_contains: str = "/hypernodes", status: int | None = None) -> int:
        with self._lock:
            return sum(
                r.method == method and path_contains in r.path and (status is None or r.status == status)
                for r in self.requests
            )

    def _take_rule(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _record(self, method: str, path: str, status: int, body: bytes | None = None, **times: float | None) -> None:
        with self._lock:
            self.requests.append(Seen(method, path, status, object_name(method, path, body), **times))  # type: ignore[arg-type]

    def _wait(self, released: threading.Event, seconds: float) -> bool:
        """Sleep ``seconds`` unless released first; True when released."""
        return released.wait(seconds)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                received = time.monotonic()
                released = proxy._released
                rule = proxy._take_rule(self.command, self.path)
                if rule is not None and rule.action == "status":
                    self._answer_status(rule, body)
                    return
                if rule is not None and rule.action == "reset":
                    proxy._record(self.command, self.path, 0, body, received=received)
                    self._reset()
                    return
                if rule is not None and rule.action == "delay":
                    proxy._wait(released, rule.delay)
                if "watch=true" in self.path.lower() and (rule is None or rule.action == "forward"):
                    self._stream(body, received)
                    return
                forwarded = time.monotonic()
                status, headers, payload = self._forward(body)
                times = {"received": received, "forwarded": forwarded, "answered": time.monotonic()}
                if rule is not None and rule.action == "lost_answer":
                    proxy._record(self.command, self.path, 0, body, **times)
                    self._reset()
                    return
                if rule is not None and rule.action == "slow_answer":
                    proxy._wait(released, rule.delay)
                proxy._record(self.command, self.path, status, body, **times)
                try:
                    self.send_response(status)
                    for key, value in headers:
                        if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    if rule is not None and rule.action == "drip":
                        self._drip(self.headers_and_body(payload), rule.delay, released)
                        return
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    self.close_connection = True  # the client gave up (timeout) before the answer

            def headers_and_body(self, payload: bytes) -> bytes:
                buffered = b"".join(getattr(self, "_headers_buffer", [])) + b"\r\n"
                self._headers_buffer = []
                return buffered + payload

            def _drip(self, data: bytes, interval: float, released: threading.Event) -> None:
                for index in range(len(data)):
                    if proxy._wait(released, interval):
                        self.wfile.write(data[index:])
                        return
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()

            def _upstream(
                self, body: bytes | None, timeout: float
            ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
                """This request sent on to the real API server (the connection is the caller's to close)."""
                connection = http.client.HTTPSConnection(
                    proxy.upstream_host, proxy.upstream_port, context=proxy.upstream_context, timeout=timeout
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    return connection, connection.getresponse()
                except OSError:
                    connection.close()
                    raise

            def _forward(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
                connection = None
                try:
                    connection, response = self._upstream(body, timeout=30)
                    return response.status, response.getheaders(), response.read()
                except OSError as exc:  # upstream down: answer as a load balancer would
                    message = json.dumps({"kind": "Status", "status": "Failure", "message": str(exc), "code": 503})
                    return 503, [("Content-Type", "application/json")], message.encode()
                finally:
                    if connection is not None:
                        connection.close()

            def _stream(self, body: bytes | None, received: float) -> None:
                """A watch: its events are passed on as they come (chunked), not read to the end first."""
                try:
                    connection, response = self._upstream(body, timeout=600)
                except OSError:
                    proxy._record(self.command, self.path, 503, body, received=received)
                    self._answer_status(Rule(status=503, reason="ServiceUnavailable"), None, record=False)
                    return
                proxy._record(self.command, self.path, response.status, body, received=received,
                              forwarded=received, answered=time.monotonic())  # fmt: skip
                self.close_connection = True
                try:
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                            self.send_header(key, value)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    while chunk := response.read1(65536):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # either side went away: the watch ends, the client watches again
                finally:
                    connection.close()

            def _answer_status(self, rule: Rule, body: bytes | None, record: bool = True) -> None:
                if record:
                    proxy._record(self.command, self.path, rule.status, body)
                payload = json.dumps({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": rule.status,
                    "reason": rule.reason, "message": f"injected by the fault proxy: {rule.reason}",
                }).encode()  # fmt: skip
                self.send_response(rule.status)
                for key, value in {"Content-Type": "application/json", **rule.headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _reset(self) -> None:
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler
