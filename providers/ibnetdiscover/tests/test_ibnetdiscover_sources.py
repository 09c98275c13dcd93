"""Where dumps come from: file, command and URL (a real local HTTP(S) server), each bounded; the settings model."""

from __future__ import annotations

import base64
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from volcano_topology_ibnetdiscover.settings import IBNetDiscoverSettings
from volcano_topology_ibnetdiscover.sources import SourceError, fetch_url, read_file, run_command

from volcano_topology.controlplane.pki import make_pki

DUMP = b"vendid=0x2c9\n" * 100


# -- file ---------------------------------------------------------------------------------------


def test_file(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(DUMP)
    assert read_file(str(path), 10_000) == DUMP
    with pytest.raises(SourceError, match="larger than maxBytes"):
        read_file(str(path), 100)
    with pytest.raises(SourceError, match="No such file"):
        read_file(str(tmp_path / "missing"), 100)


# -- command ------------------------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-ibnetdiscover"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_command_stdout_is_the_dump(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_bytes(DUMP)
    assert run_command([script(tmp_path, f'cat "{dump}"; echo noise >&2')], 30, 10_000) == DUMP


def test_command_failures(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"exited with 3: ibwarn: \[1234\] mad_rpc: _do_madrpc failed"):
        run_command([script(tmp_path, "echo 'ibwarn: [1234] mad_rpc: _do_madrpc failed' >&2; exit 3")], 30, 1000)
    with pytest.raises(SourceError, match="could not start"):
        run_command([str(tmp_path / "no-such-command")], 30, 1000)
    with pytest.raises(SourceError, match="output larger than maxBytes"):
        run_command([script(tmp_path, "yes ibnetdiscover")], 30, 100_000)


def test_a_command_that_exits_0_after_failed_smps_is_an_incomplete_discovery(tmp_path: Path) -> None:
    # libibnetdisc's words for an SMP that timed out: it carries on, and the dump lacks that node and
    # all it alone leads to, consistently (no one-sided cable), so the parser cannot tell.
    failed = "query_smp.c:233; umad (DR path slid 0; dlid 0; 0,1,7 Attr 0x11:0) bad status 110; Connection timed out"
    vendor = "query_smp.c:240; mad (DR path slid 0; dlid 0; 0,1 Attr 0xff90:0) bad status 0x1c"  # expected
    command = [script(tmp_path, f"echo dump; echo '{vendor}' >&2; echo '{failed}' >&2; exit 0")]
    with pytest.raises(SourceError, match=r"1 SMP\(s\) failed.*acceptIncompleteDiscovery.*0,1,7 Attr 0x11:0"):
        run_command(command, 30, 1000)
    assert run_command(command, 30, 1000, accept_incomplete=True) == b"dump\n"
    only_vendor = [script(tmp_path, f"echo dump; echo '{vendor}' >&2")]
    assert run_command(only_vendor, 30, 1000) == b"dump\n"
    assert IBNetDiscoverSettings.model_validate({"command": ["x"]}).accept_incomplete_discovery is False


def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The child `sleep` keeps stdout open: killing only the shell would leave the read hanging.
    with pytest.raises(SourceError, match=r"did not finish within 0.5s"):
        run_command([script(tmp_path, "echo partial; sleep 60; echo never")], 0.5, 1000)


# -- URL ----------------------------------------------------------------------------------------


DRIPPED = [0]  # bytes /drip has sent so far


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/dump":
            self.answer(200, DUMP)
        elif self.path == "/auth":
            self.answer(200, (self.headers.get("Authorization") or "none").encode())
        elif self.path == "/big":  # no Content-Length: the size limit must hold while reading
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 10_000)
        elif self.path == "/cut":  # the server dies mid-answer: fewer bytes than its Content-Length
            self.send_response(200)
            self.send_header("Content-Length", str(len(DUMP)))
            self.end_headers()
            self.wfile.write(DUMP[: len(DUMP) // 2])
            self.close_connection = True
        elif self.path == "/cut-chunked":  # the same in chunked encoding: a chunk promised, half sent
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(DUMP) + DUMP[: len(DUMP) // 2])
            self.close_connection = True
        elif self.path == "/drip":  # a byte at a time, each well within the socket timeout, for seconds
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            try:
                for _ in range(40):
                    DRIPPED[0] += 1
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.15)
            except OSError:
                return  # the client gave up
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/dump")
            self.end_headers()
        else:
            self.answer(500, b"boom")

    def answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(context: ssl.SSLContext | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    yield from serve()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    made = make_pki(tmp_path_factory.mktemp("pki"))
    return str(made.ca_cert), str(made.serving_cert), str(made.serving_key)


@pytest.fixture(scope="module")
def https_url(pki: tuple[str, str, str]) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki[1], pki[2])
    yield from serve(context)


def test_url(http_url: str) -> None:
    assert fetch_url(f"{http_url}/dump", timeout=10, max_bytes=10_000) == DUMP
    with pytest.raises(SourceError, match="larger than maxBytes"):
        fetch_url(f"{http_url}/dump", timeout=10, max_bytes=100)  # Content-Length says so
    with pytest.raises(SourceError, match="larger than maxBytes"):
        fetch_url(f"{http_url}/big", timeout=10, max_bytes=50_000)  # counted while reading
    with pytest.raises(SourceError, match="HTTP 500"):
        fetch_url(f"{http_url}/fail", timeout=10, max_bytes=100)
    with pytest.raises(SourceError, match="HTTP 302"):
        fetch_url(f"{http_url}/redirect", timeout=10, max_bytes=10_000)


def test_an_error_never_shows_the_query_of_the_url(http_url: str) -> None:
    """A presigned URL carries its token in the query: errors (logged at every failed scan) leave it out."""
    with pytest.raises(SourceError) as raised:
        fetch_url(f"{http_url}/fail?X-Amz-Signature=s3cr3t-token#frag", timeout=10, max_bytes=100)
    assert "s3cr3t-token" not in str(raised.value) and "frag" not in str(raised.value)
    assert "/fail (query hidden): HTTP 500" in str(raised.value)


def test_an_answer_cut_short_is_a_source_error(http_url: str) -> None:
    with pytest.raises(SourceError, match=r"url .*/cut: the answer ended after \d+ of \d+ bytes"):
        fetch_url(f"{http_url}/cut", timeout=10, max_bytes=10_000)
    with pytest.raises(SourceError, match=r"url .*/cut-chunked: the answer ended early"):
        fetch_url(f"{http_url}/cut-chunked", timeout=10, max_bytes=10_000)


def test_a_server_that_drips_its_answer_is_stopped_at_the_timeout(http_url: str) -> None:
    # Each byte comes within the socket timeout, so only a deadline over the whole fetch stops it
    # (the answer takes 6 s; a read that waits for a whole chunk sees it through, and only then gives up).
    DRIPPED[0] = 0
    with pytest.raises(SourceError, match=r"/drip: no complete answer within 1s"):
        fetch_url(f"{http_url}/drip", timeout=1, max_bytes=1000)
    assert DRIPPED[0] < 40, "the fetch gave up only once the whole answer was in"


def test_url_credentials(http_url: str) -> None:
    assert fetch_url(f"{http_url}/auth", timeout=10, max_bytes=1000, credentials={"token": b"t0k\n"}) == b"Bearer t0k"
    basic = fetch_url(
        f"{http_url}/auth", timeout=10, max_bytes=1000, credentials={"username": b"admin\n", "password": b"p w"}
    )
    assert basic == b"Basic " + base64.b64encode(b"admin:p w")
    assert fetch_url(f"{http_url}/auth", timeout=10, max_bytes=1000) == b"none"


def test_https_is_verified_by_default(https_url: str, pki: tuple[str, str, str]) -> None:
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_url(f"{https_url}/dump", timeout=10, max_bytes=10_000)
    assert fetch_url(f"{https_url}/dump", timeout=10, max_bytes=10_000, ca_file=pki[0]) == DUMP
    assert fetch_url(f"{https_url}/dump", timeout=10, max_bytes=10_000, verify=False) == DUMP


def test_url_timeout() -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(SourceError, match=r"timed out|within"):
            fetch_url(f"http://127.0.0.1:{silent.getsockname()[1]}/dump", timeout=0.5, max_bytes=100)
    finally:
        silent.close()


# -- settings -----------------------------------------------------------------------------------


def test_settings_need_exactly_one_source() -> None:
    assert IBNetDiscoverSettings.model_validate({"file": "/x"}).file == "/x"
    for bad in ({}, {"file": "/x", "url": "https://ufm/x"}):
        with pytest.raises(ValidationError, match="exactly one of file, command or url"):
            IBNetDiscoverSettings.model_validate(bad)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"file": "/x", "verifyTls": False}, "verifyTls"),
        ({"url": "ftp://host/x"}, "url"),
        ({"command": []}, "command"),
        ({"file": "/x", "timeout": 0}, "timeout"),
        ({"file": "/x", "maxBytes": 10}, "maxBytes"),
        ({"file": "/x", "namePrefix": "IB_"}, "namePrefix"),
        ({"file": "/x", "nodeNames": {"regex": "("}}, "nodeNames.regex"),
        ({"file": "/x", "nodeNames": {"template": "{rack}"}}, "nodeNames"),
        ({"file": "/x", "unnamedDescriptions": ["("]}, "unnamedDescriptions"),
        ({"file": "/x", "ignoredDescriptions": ["("]}, "ignoredDescriptions"),
        ({"file": "/x", "tierNames": {"0": "x"}}, "tierNames"),
    ],
)
def test_bad_settings_name_the_field(config: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        IBNetDiscoverSettings.model_validate(config)
    assert field in str(caught.value)


def test_settings_camel_case_and_defaults() -> None:
    s = IBNetDiscoverSettings.model_validate(
        {"url": "https://ufm.example.com/ibnetdiscover.txt", "insecureSkipTlsVerify": True, "caFile": "/ca.pem",
         "nodeNames": {"case": "preserve"}, "namePrefix": "ib-", "tierNames": {"2": "pod"}}
    )  # fmt: skip
    assert (s.insecure_skip_tls_verify, s.ca_file, s.node_names.case, s.tier_names) == (
        True,
        "/ca.pem",
        "preserve",
        {2: "pod"},
    )
    d = IBNetDiscoverSettings.model_validate({"command": ["ibnetdiscover"]})
    assert (d.timeout, d.max_bytes, d.insecure_skip_tls_verify, d.node_names.case) == (120, 64 << 20, False, "lower")
    assert d.options().tier_names == {1: "leaf", 2: "spine", 3: "core"}


def test_the_readme_table_lists_every_setting_with_its_default() -> None:
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \|\s*(`[^|]*`)?\s*\|", readme, re.MULTILINE))
    defaults = IBNetDiscoverSettings.model_validate({"file": "/x"}).model_dump(by_alias=True)
    defaults["file"] = None  # the one source given to validate; the table's default is "none"
    assert set(rows) == set(defaults), "every setting in the README's table, and only settings"
    for key, shown in rows.items():
        documented = yaml.safe_load(shown.strip("`")) if shown else None
        actual = defaults[key]
        if isinstance(documented, dict) and isinstance(actual, dict):
            actual = {k: actual[k] for k in documented}  # nodeNames: the table shows what is not empty
        assert documented == actual, key
