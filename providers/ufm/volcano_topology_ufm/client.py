"""The edge: GET UFM's three resources over HTTP(S) with urllib3, blocking (run from a scan thread).

- **Auth**: basic (Secret keys ``username``, ``password``) against ``/ufmRest``, or a UFM
  access token (key ``token``) sent as ``Authorization: Basic <token>`` against
  ``/ufmRestV3``, as UFM and NVIDIA's ufm_sdk_3.0 do.
- **TLS**: verified by default (system CAs, or ``caBundle``); ``insecureSkipVerify`` turns it off.
- **Bounds**: ``timeout`` is the total time of one request (connect and whole body), a
  body beyond ``maxResponseBytes`` is cut off and refused, and all requests of one scan
  end within ``scanTimeout``.
- **Retries**: connection errors, timeouts, cut-off bodies, 429, 500, 502, 503 and 504
  are retried ``retries`` times with exponential backoff (``Retry-After`` honoured up to
  ``retryBackoffMax``); anything else fails at once.
- Redirects are not followed (they would carry the Authorization header elsewhere).
- Credentials appear in no message, log line or ``repr``: only the request's path does.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from volcano_topology_ufm.parse import UFMDataError
from volcano_topology_ufm.settings import PEM_MARKER, UFMSettings

PORTS, LINKS, SYSTEMS = "resources/ports", "resources/links", "resources/systems"
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHUNK = 64 * 1024


class UFMError(RuntimeError):
    """A request to UFM failed; ``transient`` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after: float | None = None


class UFMAuthError(UFMError):
    """401 or 403: the credentials are wrong or lack the rights (never retried)."""


class MissingCredentials(UFMError):
    """Neither a token nor a username and password were given."""


class Auth:
    """The Authorization header and the API prefix it implies. Holds a secret: its repr never shows it."""

    __slots__ = ("_header", "kind", "prefix")

    def __init__(self, kind: str, header: str, prefix: str) -> None:
        self.kind, self._header, self.prefix = kind, header, prefix

    @property
    def header(self) -> str:
        return self._header

    def __repr__(self) -> str:
        return f"Auth({self.kind}, prefix={self.prefix})"


def read_credentials(settings: UFMSettings, given: Mapping[str, bytes]) -> dict[str, bytes]:
    """The Secret's data, else ``credentialsDir``'s files (read now, never kept beyond the call)."""
    if given or not settings.credentials_dir:
        return dict(given)
    folder = Path(settings.credentials_dir)
    found = {}
    for key in ("username", "password", "token"):
        path = folder / key
        if path.is_file():
            found[key] = path.read_bytes()
    return found


def make_auth(settings: UFMSettings, credentials: Mapping[str, bytes]) -> Auth:
    values = {k: v.decode("utf-8", "replace").strip() for k, v in credentials.items() if k in _KEYS}
    token, username, password = values.get("token"), values.get("username"), values.get("password")
    mode = settings.authentication
    if mode == "token" or (mode == "auto" and token):
        if not token:
            raise MissingCredentials("authentication is token, but the credentials have no key 'token'")
        if not _HEADER_SAFE.fullmatch(token):
            # http.client would refuse it quoting the whole header, token included, into the error and the logs.
            raise MissingCredentials(
                "the credentials' token has a character an HTTP header cannot carry (a line break, a space or a "
                "non-ASCII character inside it): check the Secret"
            )
        return Auth("token", f"Basic {token}", settings.api_prefix or "/ufmRestV3")
    if not username or not password:
        keys = "'username' and 'password', or 'token'"
        if settings.credentials_dir:
            raise MissingCredentials(f"no UFM credentials: credentialsDir has no non-empty files {keys}")
        raise MissingCredentials(
            f"no UFM credentials: the Secret of credentials.secretRef needs keys {keys}; "
            "`volcano-topology discover` reads no Secret: there, set credentialsDir to a directory with those "
            "keys as files"
        )
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Auth("basic", f"Basic {basic}", settings.api_prefix or "/ufmRest")


_KEYS = ("token", "username", "password")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what a token can be in a header


@dataclass
class Answers:
    ports: Any
    links: Any
    systems: Any


class UFMClient:
    """One connection pool per provider instance; ``get_json`` is safe to call from one thread at a time."""

    def __init__(
        self,
        settings: UFMSettings,
        *,
        logger: logging.Logger | None = None,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.log = logger or logging.getLogger(__name__)
        self.stopping = stopping or threading.Event()
        self.clock = clock
        tls: dict[str, Any] = {}
        if settings.insecure_skip_verify:
            tls = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
        elif settings.ca_bundle and PEM_MARKER in settings.ca_bundle:
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_cert_data": settings.ca_bundle}
        elif settings.ca_bundle:
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": settings.ca_bundle}
        else:
            tls = {"cert_reqs": "CERT_REQUIRED"}
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=1, retries=False, **tls)

    def __repr__(self) -> str:
        return f"UFMClient({self.settings.base_url})"

    def close(self) -> None:
        self.pool.clear()

    def fetch(self, auth: Auth) -> Answers:
        """Ports, links and systems, all within ``scanTimeout``."""
        deadline = self.clock() + self.settings.scan_timeout
        return Answers(
            ports=self.get_json(auth, PORTS, deadline),
            links=self.get_json(auth, LINKS, deadline),
            systems=self.get_json(auth, SYSTEMS, deadline),
        )

    def url(self, auth: Auth, resource: str) -> str:
        return f"{self.settings.base_url}{auth.prefix}/{resource}"

    def get_json(self, auth: Auth, resource: str, deadline: float | None = None) -> Any:
        """GET and parse one resource, retrying transient failures; raises :class:`UFMError` or ``UFMDataError``."""
        deadline = deadline if deadline is not None else self.clock() + self.settings.scan_timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                body = self._get(auth, resource, deadline)
            except UFMError as exc:
                wait = self._backoff(attempt, exc.retry_after)
                if not exc.transient or attempt > self.settings.retries or self.clock() + wait >= deadline:
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    raise type(exc)(f"{exc}{tries}", status=exc.status, transient=exc.transient) from None
                self.log.info("UFM %s: %s; retrying in %.1fs (attempt %d)", resource, exc, wait, attempt + 1)
                if self.stopping.wait(wait):
                    raise UFMError(f"GET {resource}: stopped while waiting to retry") from None
                continue
            return decode(body, resource)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        step: float = min(self.settings.retry_backoff * 2 ** (attempt - 1), self.settings.retry_backoff_max)
        step *= 1 + random.uniform(0, 0.1)  # jitter: replicas do not retry in step
        if retry_after is not None:
            step = max(step, min(retry_after, self.settings.retry_backoff_max))
        return step

    def _get(self, auth: Auth, resource: str, deadline: float) -> bytes:
        settings = self.settings
        started = self.clock()
        budget = min(settings.timeout, deadline - started)
        if budget <= 0:
            raise UFMError(f"GET {resource}: scanTimeout {settings.scan_timeout:g}s used up")
        timeout = urllib3.Timeout(connect=min(settings.connect_timeout, budget), read=budget)
        headers = {"Authorization": auth.header, "Accept": "application/json"}
        try:
            response = self.pool.request(
                "GET", self.url(auth, resource), headers=headers, timeout=timeout, redirect=False,
                preload_content=False,
            )  # fmt: skip
        except SSLError as exc:
            raise UFMError(f"GET {resource}: TLS failed: {_reason(exc)}") from None
        except NewConnectionError as exc:  # before the timeout: urllib3 makes it a kind of ConnectTimeoutError
            raise UFMError(f"GET {resource}: cannot connect: {_reason(exc)}", transient=True) from None
        except Urllib3Timeout:
            raise UFMError(f"GET {resource}: no answer within {budget:g}s", transient=True) from None
        except Urllib3Error as exc:
            raise UFMError(f"GET {resource}: {_reason(exc)}", transient=True) from None
        except (ValueError, UnicodeError):  # http.client refusing a header: its message quotes the header's value
            raise UFMError(f"GET {resource}: the request could not be sent (an invalid header value)") from None
        try:
            return self._body(response, resource, started, budget)
        finally:
            response.release_conn()

    def _body(self, response: Any, resource: str, started: float, budget: float) -> bytes:
        status = int(response.status)
        if status != 200:
            response.drain_conn()
            raise _status_error(resource, status, response.headers)
        limit = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise UFMDataError(f"GET {resource}: answer of {int(declared)} bytes is above maxResponseBytes {limit}")
        chunks: list[bytes] = []
        size = 0
        try:
            # read1: whatever one read of the socket brings, so a body trickling in is timed piece by piece
            # (stream() would wait for 64 KiB per piece, each wait only bounded by the read timeout).
            while chunk := response.read1(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UFMDataError(f"GET {resource}: answer is above maxResponseBytes {limit}, refused")
                if self.clock() - started > budget:
                    raise UFMError(f"GET {resource}: answer not complete within {budget:g}s", transient=True)
                chunks.append(chunk)
        except Urllib3Timeout:
            raise UFMError(f"GET {resource}: answer not complete within {budget:g}s", transient=True) from None
        except ProtocolError as exc:
            raise UFMError(f"GET {resource}: answer cut off: {_reason(exc)}", transient=True) from None
        body = b"".join(chunks)
        kind = (response.headers.get("Content-Type") or "").lower()
        if "html" in kind or body.lstrip()[:1] == b"<":
            raise UFMDataError(
                f"GET {resource}: UFM answered an HTML page, not JSON (a login page or a proxy's error page?)"
            )
        return body


def decode(body: bytes, resource: str) -> Any:
    if not body.strip():
        raise UFMDataError(f"GET {resource}: empty answer")
    try:
        return json.loads(body)
    except RecursionError:
        raise UFMDataError(f"GET {resource}: answer is not JSON that UFM sends (nested too deeply)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at byte {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        cut = ""
        if isinstance(exc, json.JSONDecodeError) and (
            exc.pos >= len(body.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
        ):
            cut = " (cut off?)"
        raise UFMDataError(f"GET {resource}: answer is not JSON{where}{cut}") from None
    except ValueError:  # int() of a number of more than 4,300 digits
        raise UFMDataError(f"GET {resource}: answer is not JSON that UFM sends (a number too long to read)") from None


def _status_error(resource: str, status: int, headers: Mapping[str, str]) -> UFMError:
    if status in (401, 403):
        what = "credentials refused" if status == 401 else "not allowed for this UFM user"
        return UFMAuthError(f"GET {resource}: HTTP {status}: {what}", status=status)
    if status in (301, 302, 303, 307, 308):
        return UFMError(
            f"GET {resource}: HTTP {status}: UFM redirects (check endpoint and apiPrefix); not followed", status=status
        )
    hint = " (check endpoint and apiPrefix)" if status == 404 else ""
    error = UFMError(f"GET {resource}: HTTP {status}{hint}", status=status, transient=status in RETRIED_STATUSES)
    error.retry_after = _retry_after(headers.get("Retry-After"))
    return error


def _retry_after(value: str | None) -> float | None:
    """Seconds, or an HTTP date (both are allowed); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _reason(exc: BaseException) -> str:
    """urllib3's own message names the pool and URL; keep its cause only (it never holds headers)."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split(": ", 1)[-1] if text.startswith("<") else text
