"""The provider's real scan loop against a loopback UFM: snapshots, refusals that keep the last good topology."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import pytest
from pydantic import ValidationError
from ufm_testlib import (
    BASIC,
    PASSWORD,
    SECRETS,
    TOKEN_CREDS,
    USER,
    Canned,
    FakeUFM,
    context,
    first_outcome,
    members,
    rail_optimised,
    run_scans,
    tiers,
    to_ufm,
    two_tier,
)
from volcano_topology_ufm.client import LINKS, PORTS, SYSTEMS
from volcano_topology_ufm.provider import UFMProvider
from volcano_topology_ufm.settings import UFMSettings

from volcano_topology.controlplane.pki import Pki
from volcano_topology.provider import EventType
from volcano_topology.registry import LoadedProvider, ProviderConfigError, instantiate, load

FAST = {"retries": 0, "timeout": "1s", "connectTimeout": "1s"}


def provider_for(server: FakeUFM, pki: Pki | None = None, **extra: Any) -> UFMProvider:
    config: dict[str, Any] = {"endpoint": server.endpoint, **FAST, **extra}
    if pki is not None and not extra.get("insecureSkipVerify"):
        config["caBundle"] = str(pki.ca_cert)
    return UFMProvider(UFMSettings.model_validate(config))


def test_first_scan_sends_the_whole_tree(ufm: FakeUFM, pki: Pki) -> None:
    event, error = first_outcome(provider_for(ufm, pki), BASIC)
    assert error is None and event is not None
    assert event.type is EventType.SNAPSHOT
    assert tiers(event)[1] == ["leaf-0", "leaf-1"]
    assert members(event)["leaf-0"] == ["gpu-000", "gpu-001"]
    assert [s.path.split("/")[-1] for s in ufm.seen] == ["ports", "links", "systems"]


def test_token_authentication(ufm: FakeUFM, pki: Pki) -> None:
    event, error = first_outcome(provider_for(ufm, pki), TOKEN_CREDS)
    assert error is None and event is not None
    assert {s.path.split("/")[1] for s in ufm.seen} == {"ufmRestV3"}


def test_the_rail_optimised_fabric_over_https(pki: Pki) -> None:
    with FakeUFM(to_ufm(rail_optimised(sus=2, rails=8, hosts=4)), cert=(pki.serving_cert, pki.serving_key)) as ufm:
        event, error = first_outcome(provider_for(ufm, pki), BASIC)
    assert error is None and event is not None
    assert len(tiers(event)[1]) == 2 and len(tiers(event)[2]) == 1


def test_insecure_skip_verify_logs_a_warning(ufm: FakeUFM, caplog: pytest.LogCaptureFixture) -> None:
    event, error = first_outcome(provider_for(ufm, insecureSkipVerify=True), BASIC)
    assert error is None and event is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "insecureSkipVerify" in r.getMessage()]
    assert len(warnings) == 1
    assert "NOT verified" in warnings[0].getMessage()


def test_a_plain_http_endpoint_logs_a_warning(plain_ufm: FakeUFM, caplog: pytest.LogCaptureFixture) -> None:
    event, error = first_outcome(provider_for(plain_ufm), BASIC)
    assert error is None and event is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "http://" in r.getMessage()]
    assert len(warnings) == 1 and "unencrypted" in warnings[0]


def test_no_warning_when_tls_is_verified(ufm: FakeUFM, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    first_outcome(provider_for(ufm, pki), BASIC)
    assert "insecureSkipVerify" not in caplog.text
    assert "unencrypted" not in caplog.text


def test_wrong_ca_fails_the_scan(ufm: FakeUFM, other_pki: Pki) -> None:
    event, error = first_outcome(provider_for(ufm, caBundle=str(other_pki.ca_cert)), BASIC)
    assert event is None and error is not None and "TLS failed" in error


def test_no_credentials_fail_the_scan_clearly(ufm: FakeUFM, pki: Pki) -> None:
    event, error = first_outcome(provider_for(ufm, pki), {})
    assert event is None and error is not None
    assert "no UFM credentials: the Secret of credentials.secretRef needs keys 'username' and 'password'" in error
    assert ufm.seen == []


def test_credentials_dir_is_read_when_there_is_no_secret(ufm: FakeUFM, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "username").write_text(USER + "\n")
    (tmp_path / "password").write_text(PASSWORD + "\n")
    event, error = first_outcome(provider_for(ufm, pki, credentialsDir=str(tmp_path)), {})
    assert error is None and event is not None


def test_credentials_dir_is_read_at_each_scan(ufm: FakeUFM, pki: Pki, tmp_path: Path) -> None:
    """A rotated password in the directory is used by the next scans, without a restart."""
    (tmp_path / "username").write_text(USER)
    (tmp_path / "password").write_text(PASSWORD)
    provider = provider_for(ufm, pki, credentialsDir=str(tmp_path))
    rotated = "Basic " + base64.b64encode(f"{USER}:rotated-Pa55".encode()).decode()

    def until(p: UFMProvider, seen: list[Any]) -> bool:
        if seen and ufm.basic != rotated:
            (tmp_path / "password").write_text("rotated-Pa55")
            ufm.basic = rotated  # a scan in flight may get a 401: the next one reads the new password
        return sum(s.authorization == rotated for s in list(ufm.seen)) >= 3  # a whole scan with it

    run_scans(provider, {}, until)
    assert provider.stats.scans >= 2


TOO_BIG = Canned(200, b"[" + b"0," * 40000 + b"0]")  # 80 kB, above the 64 kB limit the test sets


@pytest.mark.parametrize(
    ("resource", "canned", "message"),
    [
        (PORTS, Canned(200, b"[]"), "ports: no host port cabled to a switch"),
        (SYSTEMS, Canned(200, b"[]"), "systems: no switch in the answer"),
        (PORTS, Canned(200, b""), "empty answer"),
        (LINKS, Canned(200, b'[{"source_guid": "1c34'), "not JSON"),
        (PORTS, Canned(200, b"<html><body>UFM is starting</body></html>"), "HTML page"),
        (SYSTEMS, TOO_BIG, "above maxResponseBytes 65536"),
        (PORTS, Canned(500), "HTTP 500"),
        (LINKS, Canned(401), "HTTP 401"),
        (PORTS, Canned(200, b'{"error": "no"}'), "ports: expected a JSON list, got a JSON object"),
    ],
    ids=["empty-ports", "empty-systems", "empty-body", "truncated", "html", "too-big", "500", "401", "object"],
)
def test_a_broken_answer_after_a_good_one_keeps_the_last_good_topology(
    ufm: FakeUFM, pki: Pki, resource: str, canned: Canned, message: str
) -> None:
    provider = provider_for(ufm, pki, maxResponseBytes=65536)
    broken = {"done": False}

    def until(p: UFMProvider, seen: list[Any]) -> bool:
        if seen and not broken["done"]:
            ufm.set(resource, canned)  # UFM goes bad after the first good scan
            broken["done"] = True
        return p.stats.failures >= 2

    events = run_scans(provider, BASIC, until)
    assert len(events) == 1  # the good snapshot, and nothing after it: no empty or partial one
    assert events[0].hypernodes
    assert message in (provider.stats.last_error or "")
    assert provider.gauges()["scan_failures"] >= 2


def test_a_sudden_drop_of_hosts_is_refused(ufm: FakeUFM, pki: Pki) -> None:
    small = to_ufm(two_tier(leaves=1, spines=1, hosts=2))  # 2 of 4 hosts: a 50% drop
    state = {"swapped": False}

    def until(p: UFMProvider, seen: list[Any]) -> bool:
        if seen and not state["swapped"]:
            ufm.serve(small)
            state["swapped"] = True
        return p.stats.failures >= 1

    provider = provider_for(ufm, pki, maxHostDropFraction=0.3)
    events = run_scans(provider, BASIC, lambda p, seen: until(p, seen) and p.stats.failures >= 3)
    assert len(events) == 1  # refused scan after scan, as long as the drop lasts
    assert "2 hosts, 4 in the last good scan" in (provider.stats.last_error or "")
    assert "restart the provider" in (provider.stats.last_error or "")
    fresh = provider_for(ufm, pki, maxHostDropFraction=0.3)  # a restart: nothing to compare with
    (event,) = run_scans(fresh, BASIC, lambda p, seen: bool(seen))
    assert tiers(event)[1] == ["leaf-0"]


def test_a_drop_within_the_threshold_is_applied(ufm: FakeUFM, pki: Pki) -> None:
    state = {"swapped": False}

    def until(p: UFMProvider, seen: list[Any]) -> bool:
        if seen and not state["swapped"]:
            ufm.serve(to_ufm(_three_of_four()))
            state["swapped"] = True
        return len(seen) >= 2

    events = run_scans(provider_for(ufm, pki, maxHostDropFraction=0.3), BASIC, until)
    assert members(events[1])["leaf-1"] == ["gpu-100"]


def _three_of_four() -> Any:
    model = two_tier()
    del model.hosts["GPU-101"]
    return model


def test_unmapped_hosts_are_logged_once_per_change_and_counted(
    ufm: FakeUFM, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    provider = provider_for(ufm, pki, nodeNames={"regex": "gpu-0.*"})  # leaf-1's hosts do not match
    run_scans(provider, BASIC, lambda p, seen: p.stats.scans >= 3 and bool(seen))
    unmapped = [r.getMessage() for r in caplog.records if "not mapped to a node name" in r.getMessage()]
    assert len(unmapped) == 1  # three scans, one report
    assert "2 host(s) not mapped" in unmapped[0]
    assert "GPU-100: does not match nodeNames.regex 'gpu-0.*'" in unmapped[0]
    assert provider.gauges()["unmapped_hosts"] == 2
    assert provider.gauges()["mapped_hosts"] == 2


def test_a_change_in_unmapped_hosts_is_logged_again(ufm: FakeUFM, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    provider = provider_for(ufm, pki, nodeNames={"regex": "gpu-0.*"}, maxHostDropFraction=1.0)
    state = {"swapped": False}

    def until(p: UFMProvider, seen: list[Any]) -> bool:
        if p.stats.scans >= 2 and not state["swapped"]:
            ufm.serve(to_ufm(_three_of_four()))
            state["swapped"] = True
        return p.stats.scans >= 4

    run_scans(provider, BASIC, until)
    unmapped = [r.getMessage() for r in caplog.records if "not mapped to a node name" in r.getMessage()]
    assert [m.split(" host(s)")[0].rsplit(" ", 1)[-1] for m in unmapped] == ["2", "1"]
    assert provider.gauges()["unmapped_hosts"] == 1


def test_the_same_answer_twice_sends_one_snapshot(ufm: FakeUFM, pki: Pki) -> None:
    provider = provider_for(ufm, pki)
    events = run_scans(provider, BASIC, lambda p, seen: p.stats.scans >= 3)
    assert len(events) == 1


def test_nothing_secret_in_repr_logs_or_errors(ufm: FakeUFM, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = provider_for(ufm, pki)
    ufm.queue(PORTS, Canned(500))
    run_scans(provider, {**BASIC, **TOKEN_CREDS}, lambda p, seen: bool(seen))
    text = "\n".join([repr(provider), caplog.text, str(provider.stats), repr(provider.settings), repr(provider.client)])
    assert "HTTP 500" in text
    for secret in SECRETS:
        assert secret not in text


# -- configuration ----------------------------------------------------------------------------------


def loaded() -> LoadedProvider:
    providers, errors = load(["ufm"])
    assert not errors
    return providers["ufm"]


def test_the_entry_point_is_installed() -> None:
    assert loaded().cls is UFMProvider
    assert UFMProvider.interval == 600  # 10m unless the entry's interval says otherwise


def test_volcano_config_keys_are_accepted() -> None:
    provider = instantiate(loaded(), {"endpoint": "https://ufm.example.com", "insecureSkipVerify": True})
    assert isinstance(provider, UFMProvider)
    assert provider.settings.insecure_skip_verify is True


BAD_PEM = "-----BEGIN CERTIFICATE-----\nno\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "endpoint: Field required"),
        ({"endpoint": "https://admin:hunter2@ufm.example.com"}, "endpoint must not carry credentials"),
        ({"endpoint": "ftp://ufm"}, "endpoint must be host[:port] or an http(s):// URL"),
        ({"endpoint": "https://ufm.example.com/ufmRest"}, "endpoint must not end in the REST prefix"),
        ({"endpoint": "ufm.example.com:8443/ufmRestV3/"}, "endpoint must not end in the REST prefix"),
        ({"endpoint": "ufm", "insecureSkipVerify": True, "caBundle": certifi.where()}, "exclude each other"),
        ({"endpoint": "ufm", "caBundle": "/no/such/file.pem"}, "caBundle must be PEM text or the path"),
        ({"endpoint": "ufm", "caBundle": BAD_PEM}, "caBundle holds no usable PEM certificate"),
        ({"endpoint": "ufm", "caBundle": __file__}, "caBundle holds no usable PEM certificate"),
        ({"endpoint": "ufm", "timeOut": "10s"}, "timeOut: Extra inputs are not permitted"),
        ({"endpoint": "ufm", "timeout": "ten"}, "timeout: Value error, not a duration"),
        ({"endpoint": "ufm", "nodeNames": {"regex": "("}}, "nodeNames.regex"),
        ({"endpoint": "ufm", "scanTimeout": "10m"}, "scanTimeout must be at most 280s"),
        ({"endpoint": "ufm", "namePrefix": "UFM_"}, "namePrefix must be"),
        ({"endpoint": "ufm", "nonLeafSwitches": ["("]}, "nonLeafSwitches: not a valid regular expression"),
        ({"endpoint": "ufm", "retries": 11}, "retries: Input should be less than or equal to 10"),
        ({"endpoint": "ufm", "retries": -1}, "retries: Input should be greater than or equal to 0"),
        ({"endpoint": "ufm", "namePrefix": "a" * 21}, "namePrefix must be at most 20"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderConfigError) as caught:
        instantiate(loaded(), config)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_settings_are_frozen() -> None:
    settings = UFMSettings(endpoint="ufm")
    with pytest.raises(ValidationError):
        settings.endpoint = "other"  # type: ignore[misc]


def test_a_restarted_instance_still_retries(ufm: FakeUFM, pki: Pki) -> None:
    """As the operator's supervisor does: start, stop, start again (one event loop). The second start's scans
    still wait between retries, rather than giving up as if stopping."""
    provider = provider_for(ufm, pki, retries=1, retryBackoff="10ms", retryBackoffMax="20ms")

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(2000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not reached: {provider.stats}")

    async def go() -> None:
        ctx = context(BASIC, interval=30.0)
        events: asyncio.Queue[Any] = asyncio.Queue()
        replies: asyncio.Queue[Any] = asyncio.Queue()
        first = asyncio.create_task(provider.start(events, replies, ctx))
        await until(lambda: not events.empty())
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await provider.stop()
        ufm.queue(PORTS, Canned(503))
        second = asyncio.create_task(provider.start(events, replies, ctx))
        await until(lambda: provider.stats.scans == 2 and not provider.threads.alive and provider.threads.hung == 0)
        ctx.stopping.set()
        await second

    asyncio.run(go())
    assert provider.stats.failures == 0, provider.stats.last_error
    assert len(ufm.requests_for(PORTS)) == 3  # the first scan's; then the 503 and its retry
