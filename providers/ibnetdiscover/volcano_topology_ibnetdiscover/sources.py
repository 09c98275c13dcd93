"""Where a dump comes from: a file, a command, a URL. The only module here that does I/O.

Each returns the dump's bytes or raises :class:`SourceError`; each is bounded in size (``max_bytes``),
and the command and the fetch in time (``timeout``), so a stuck fabric tool or server cannot pin a
scan thread or fill memory.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

CHUNK = 1 << 16

# libibnetdisc logs an SMP that timed out or was refused ("umad (DR path ... Attr 0x11:0) bad status 110;
# Connection timed out") to stderr and carries on: the node behind it, and all it alone leads to, is
# missing from a dump that is otherwise consistent (both ends list every cable it shows), exit status 0.
# Attr 0xff90 is Mellanox's extended port info, which other vendors' nodes refuse: that one is expected.
_SMP_FAILURE = re.compile(r"\bbad status\b")
_EXPECTED_SMP_FAILURE = re.compile(r"\bAttr 0xff90\b", re.IGNORECASE)


class SourceError(RuntimeError):
    """The dump could not be read: the message says from where and why."""


def read_file(path: str, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"file {path}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise SourceError(f"file {path}: larger than maxBytes ({max_bytes} bytes)")
    return data


def run_command(argv: Sequence[str], timeout: float, max_bytes: int, accept_incomplete: bool = False) -> bytes:
    """Run ``argv`` (no shell) and return its stdout; a non-zero exit, a timeout or too much output is an error.

    So is an incomplete discovery: an exit status of 0 with failed SMPs reported on stderr (see
    ``_SMP_FAILURE``), unless ``accept_incomplete``. The command runs in a process group of its own,
    killed whole on timeout, so a child it started cannot keep the pipe open.
    """
    shown = " ".join(argv)
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, start_new_session=True
            )
        except OSError as exc:
            raise SourceError(f"command {shown!r} could not start: {exc.strerror or exc}") from exc
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            _kill_group(process)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            data, too_big = _read_bounded(process.stdout, max_bytes)
            if too_big:
                _kill_group(process)
            code = process.wait()
        finally:
            timer.cancel()
            if process.stdout is not None:
                process.stdout.close()
        if expired.is_set():
            raise SourceError(f"command {shown!r} did not finish within {timeout:g}s")
        if too_big:
            raise SourceError(f"command {shown!r}: output larger than maxBytes ({max_bytes} bytes)")
        if code != 0:
            errors.seek(0)
            tail = errors.read()[-800:].decode("utf-8", "replace").strip()
            raise SourceError(f"command {shown!r} exited with {code}" + (f": {tail}" if tail else ""))
        if not accept_incomplete:
            errors.seek(0)
            failed = smp_failures(errors.read(max_bytes).decode("utf-8", "replace"))
            if failed:
                raise SourceError(
                    f"command {shown!r}: {len(failed)} SMP(s) failed, so the dump may lack part of the fabric "
                    f"(acceptIncompleteDiscovery: true takes it anyway): {failed[0]}"
                )
    return data


def smp_failures(stderr: str) -> list[str]:
    """The lines of ``stderr`` that report a failed SMP other than the expected ones (see ``_SMP_FAILURE``)."""
    return [
        line.strip()
        for line in stderr.splitlines()
        if _SMP_FAILURE.search(line) and not _EXPECTED_SMP_FAILURE.search(line)
    ]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _read_bounded(stream: IO[bytes] | None, max_bytes: int, deadline: float | None = None) -> tuple[bytes, bool]:
    """Up to ``max_bytes`` of ``stream``; ``(data, True)`` when there was more."""
    if stream is None:
        return b"", False
    chunks: list[bytes] = []
    total = 0
    # read1: what one read of the socket or pipe gives. read(CHUNK) waits for a whole chunk, so a server
    # sending a byte now and then, each within the socket timeout, would hold a fetch far past `deadline`.
    read = getattr(stream, "read1", stream.read)
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return b"".join(chunks), False
        total += len(chunk)
        if total > max_bytes:
            return b"", True
        chunks.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one could send the credentials to another host."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def shown_url(url: str) -> str:
    """The URL as errors and logs show it: without a query or fragment (a presigned token lives there)."""
    parts = urlsplit(url)
    hidden = " (query hidden)" if parts.query or parts.fragment else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + hidden


def fetch_url(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    verify: bool = True,
    ca_file: str | None = None,
    credentials: Mapping[str, bytes] | None = None,
) -> bytes:
    """GET ``url``. TLS is verified unless ``verify`` is False (against ``ca_file`` when given).

    ``credentials`` (the Secret of ``credentials.secretRef``): ``token`` is sent as a Bearer token,
    ``username`` and ``password`` as basic authentication. Redirects are not followed.
    """
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    shown = shown_url(url)
    request = urllib.request.Request(url, headers=_auth_headers(credentials or {}))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise SourceError(f"url {shown}: {length} bytes, larger than maxBytes ({max_bytes} bytes)")
            data, too_big = _read_bounded(response, max_bytes, deadline)
            # http.client returns what came when the connection closes early, without an error: a dump
            # cut short would reach the parser, which should be the last check, not the only one.
            if not too_big and length is not None and length.isdigit() and len(data) < int(length):
                raise SourceError(f"url {shown}: the answer ended after {len(data)} of {length} bytes")
    except urllib.error.HTTPError as exc:
        raise SourceError(f"url {shown}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise SourceError(f"url {shown}: {exc.reason}") from exc
    except http.client.HTTPException as exc:  # IncompleteRead: a chunked answer cut short, and the like
        raise SourceError(f"url {shown}: the answer ended early ({type(exc).__name__}: {exc})") from exc
    except TimeoutError as exc:
        raise SourceError(f"url {shown}: no complete answer within {timeout:g}s") from exc
    except OSError as exc:
        raise SourceError(f"url {shown}: {exc}") from exc
    if too_big:
        raise SourceError(f"url {shown}: larger than maxBytes ({max_bytes} bytes)")
    return data


def _auth_headers(credentials: Mapping[str, bytes]) -> dict[str, str]:
    if "token" in credentials:
        return {"Authorization": "Bearer " + credentials["token"].decode().strip()}
    if "username" in credentials and "password" in credentials:
        # A Secret made with `echo` ends in a newline that is not part of the value.
        pair = credentials["username"].rstrip(b"\r\n") + b":" + credentials["password"].rstrip(b"\r\n")
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}
