"""A bare HTTPS client for the API server: keep-alive connections per thread, no retries, no models.

It is both the benchmark's raw baseline client and the harness's own client. Every request it sends
is tallied by ``(verb, resource)`` the way ``apiserver_request_total`` labels it, so the harness can
subtract its own requests from the API server's counts and leave only the operator's.
"""

from __future__ import annotations

import collections
import http.client
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

APPLY = "application/apply-patch+yaml"


def request_key(method: str, path: str, content_type: str | None) -> str | None:
    """``VERB resource[/subresource]`` as the API server counts the request; None for a non-resource URL."""
    parsed = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parsed.query)
    parts = [p for p in parsed.path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return None
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else ""
    verb = {"GET": "GET", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE", "PATCH": "PATCH"}[method]
    if method == "GET" and query.get("watch", [""])[0] in ("1", "true"):
        verb = "WATCH"
    elif method == "GET" and name is None:
        verb = "LIST"
    elif method == "DELETE" and name is None:
        verb = "DELETECOLLECTION"
    elif method == "PATCH" and content_type == APPLY:
        verb = "APPLY"
    return f"{verb} {resource}" + (f"/{sub}" if sub else "")


@dataclass
class Api:
    """``host``/``port`` of the API server, a bearer token, the CA that signed its serving certificate."""

    host: str
    port: int
    token: str
    cafile: str
    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_url(cls, url: str, token: str, cafile: str) -> Api:
        parsed = urllib.parse.urlsplit(url)
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 443, token, cafile)

    def connect(self, timeout: float | None = 60.0) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=self.cafile)
        return http.client.HTTPSConnection(self.host, self.port, context=context, timeout=timeout)

    def count(self, method: str, path: str, content_type: str | None = None) -> None:
        key = request_key(method, path, content_type)
        if key is not None:
            with self._lock:
                self.tally[key] += 1

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def send(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> tuple[int, bytes]:
        """One request on this thread's kept-alive connection (reconnecting once if the server closed it)."""
        data = json.dumps(body).encode() if body is not None else None
        content_type = content_type or ("application/json" if data is not None else None)
        self.count(method, path, content_type)
        for attempt in (1, 2):
            conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self.connect()
            try:
                conn.request(method, path, body=data, headers=self.headers(content_type))
                response = conn.getresponse()
                payload = response.read()  # always read the body: the connection is reused
                return response.status, payload
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> tuple[int, Any]:
        status, payload = self.send(method, path, body, content_type)
        try:
            return status, json.loads(payload) if payload else None
        except json.JSONDecodeError:
            return status, payload.decode(errors="replace")

    def must(self, method: str, path: str, body: Any = None, content_type: str | None = None, ok: tuple[int, ...] = (
            200, 201)) -> Any:  # fmt: skip
        status, answer = self.json(method, path, body, content_type)
        if status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {str(answer)[:500]}")
        return answer

    def metrics(self) -> str:
        status, payload = self.send("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics: HTTP {status}")
        return payload.decode()
