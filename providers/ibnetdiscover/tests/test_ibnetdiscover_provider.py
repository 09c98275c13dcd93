"""The provider: a scan of director.txt, its gauges and reports, and the last good topology kept on a bad dump."""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
from pathlib import Path

import pytest
from volcano_topology_ibnetdiscover.parse import ParseError
from volcano_topology_ibnetdiscover.provider import IBNetDiscoverProvider
from volcano_topology_ibnetdiscover.settings import IBNetDiscoverSettings

from volcano_topology.provider import ProviderContext
from volcano_topology.runner import NoSecrets, StaticCluster


def provider(**config: object) -> IBNetDiscoverProvider:
    return IBNetDiscoverProvider(IBNetDiscoverSettings.model_validate(config))


def test_scan_and_gauges(director_path: Path) -> None:
    p = provider(file=str(director_path))
    assert p.gauges() == {}, "no figures before the first good scan"
    hypernodes = p.scan()
    assert len(hypernodes) == 160
    assert p.gauges() == {
        "switches": 400, "leaf_switches": 154, "hosts": 280, "mapped_hosts": 280, "unmapped_hosts": 0,
        "excluded_hosts": 0, "unnamed_hca_ports": 103, "ignored_hcas": 0, "hostless_leaf_switches": 6,
        "unreached_switches": 0,
        "tiers": 3, "hypernodes": 160,
    }  # fmt: skip


def test_left_out_hosts_are_logged_once_per_change(director_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = provider(file=str(director_path), nodeNames={"regex": "sat1110901.*"})
    with caplog.at_level(logging.INFO):
        p.scan()
        p.scan()
    unmapped = [r for r in caplog.records if "hosts are unmapped" in r.getMessage()]
    unnamed = [r for r in caplog.records if "have no usable node description" in r.getMessage()]
    assert len(unmapped) == 1 and len(unnamed) == 1
    assert unmapped[0].getMessage().startswith(f"{int(p.gauges()['unmapped_hosts'])} of 280 hosts are unmapped")
    assert "does not match nodeNames.regex" in unmapped[0].getMessage()
    assert "on sat11-0101-0901-09ib0 port 1" in unnamed[0].getMessage()
    assert any("ignored 2 line(s)" in r.getMessage() for r in caplog.records)


def test_a_bad_dump_raises_from_scan(tmp_path: Path, director_path: Path) -> None:
    path = tmp_path / "cut.txt"
    path.write_bytes(director_path.read_bytes()[:1_000_000])
    with pytest.raises(ParseError, match=r"^line 12371: "):
        provider(file=str(path)).scan()


async def test_a_bad_dump_keeps_the_last_good_topology(tmp_path: Path, director_path: Path) -> None:
    good = await asyncio.to_thread(director_path.read_bytes)
    path = tmp_path / "fabric.txt"
    await asyncio.to_thread(path.write_bytes, good)
    p = provider(file=str(path))
    events: asyncio.Queue = asyncio.Queue()  # type: ignore[type-arg]
    ctx = ProviderContext("ibnetdiscover", logging.getLogger("t"), StaticCluster(), NoSecrets(), interval=0.05)
    task = asyncio.create_task(p.start(events, asyncio.Queue(), ctx))
    try:
        first = await asyncio.wait_for(events.get(), 60)
        assert len(first.hypernodes) == 160
        await asyncio.to_thread(path.write_bytes, good[: len(good) // 2])  # truncated mid-block
        for _ in range(600):
            if p.stats.failures >= 2:
                break
            await asyncio.sleep(0.05)
        assert p.stats.failures >= 2 and "ParseError: line" in (p.stats.last_error or "")
        assert events.empty(), "no snapshot from a bad dump"
        assert p.gauges()["hypernodes"] == 160, "the figures are the last good scan's"
        await asyncio.to_thread(path.write_bytes, good)
        scans = p.stats.scans
        for _ in range(600):
            if p.stats.scans > scans + 1 and p.stats.consecutive_failures == 0:
                break
            await asyncio.sleep(0.05)
        assert p.stats.consecutive_failures == 0
        assert events.empty(), "the same topology again is not sent again"
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 30)


def test_command_source(tmp_path: Path, director_path: Path) -> None:
    fake = tmp_path / "ibnetdiscover"
    fake.write_text(f'#!/bin/sh\nexec cat "{director_path}"\n')
    fake.chmod(0o755)
    assert len(provider(command=[str(fake)]).scan()) == 160


async def test_url_source_with_the_secret_as_credentials(director_path: Path) -> None:
    dump = await asyncio.to_thread(director_path.read_bytes)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == "Bearer s3cret"
            body = dump if ok else b"no"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = provider(url=f"http://127.0.0.1:{server.server_address[1]}/ibnetdiscover.txt")
    events: asyncio.Queue = asyncio.Queue()  # type: ignore[type-arg]
    ctx = ProviderContext(
        "ibnetdiscover", logging.getLogger("t"), StaticCluster(), NoSecrets(), credentials={"token": b"s3cret\n"}
    )
    task = asyncio.create_task(p.start(events, asyncio.Queue(), ctx))
    try:
        snapshot = await asyncio.wait_for(events.get(), 60)
        assert len(snapshot.hypernodes) == 160
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(server.shutdown)
        server.server_close()


def test_stats_prints_the_shape_of_the_dump(director_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from volcano_topology_ibnetdiscover.stats import main

    assert main([str(director_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "400 switches, 2328 HCAs, 17446 port lines; noise lines ignored: 1, 33821"
    assert "  distance 2: 86 switches (6 left out: leaves without hosts)" in out
    assert "    cables per switch: hca=0 down=20 same=0 up=0 x6; hca=0 down=40 same=0 up=0 x80" in out
    assert out[-3:] == [
        "  tier 1 (leaf): 151; members: 1 x26; 2 x123; 4 x2",
        "  tier 2 (spine): 8; members: 17 x1; 18 x2; 19 x2; 20 x3",
        "  tier 3 (core): 1; members: 8 x1",
    ]
    assert main([str(director_path), "--node-names", '{"exclude": [".*ufm"]}']) == 0
    assert "  tier 1 (leaf): 153; members: 1 x28; 2 x125" in capsys.readouterr().out
