"""The HTTP edge against a loopback UFM: auth, TLS, timeouts, retries, odd answers, size limit, no leaks."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from typing import Any

import pytest
from ufm_testlib import BASIC, PASSWORD, SECRETS, TOKEN, TOKEN_CREDS, USER, Canned, FakeUFM, to_ufm, two_tier
from volcano_topology_ufm.client import (
    PORTS,
    MissingCredentials,
    UFMAuthError,
    UFMClient,
    UFMError,
    make_auth,
)
from volcano_topology_ufm.parse import UFMDataError
from volcano_topology_ufm.settings import UFMSettings

from volcano_topology.controlplane.pki import Pki

FAST = {"retryBackoff": "10ms", "retryBackoffMax": "50ms", "timeout": "2s", "connectTimeout": "1s"}


def client_for(server: FakeUFM, pki: Pki | None = None, **extra: Any) -> UFMClient:
    config: dict[str, Any] = {"endpoint": server.endpoint, **FAST, **extra}
    if pki is not None and "caBundle" not in extra and not extra.get("insecureSkipVerify"):
        config["caBundle"] = str(pki.ca_cert)
    return UFMClient(UFMSettings.model_validate(config))


def get_ports(client: UFMClient, credentials: dict[str, bytes] = BASIC) -> Any:
    return client.get_json(make_auth(client.settings, credentials), PORTS)


# -- auth --------------------------------------------------------------------------------------


def test_basic_auth_against_ufmrest(ufm: FakeUFM, pki: Pki) -> None:
    ports = get_ports(client_for(ufm, pki))
    assert isinstance(ports, list) and ports
    (seen,) = ufm.seen
    assert seen.path == "/ufmRest/resources/ports"
    assert seen.authorization == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def test_token_auth_is_basic_token_against_ufmrestv3(ufm: FakeUFM, pki: Pki) -> None:
    get_ports(client_for(ufm, pki), TOKEN_CREDS)
    (seen,) = ufm.seen
    assert (seen.path, seen.authorization) == ("/ufmRestV3/resources/ports", f"Basic {TOKEN}")


def test_auto_prefers_the_token_and_basic_can_be_forced(ufm: FakeUFM, pki: Pki) -> None:
    both = {**BASIC, **TOKEN_CREDS}
    get_ports(client_for(ufm, pki), both)
    get_ports(client_for(ufm, pki, authentication="basic"), both)
    assert [s.path for s in ufm.seen] == ["/ufmRestV3/resources/ports", "/ufmRest/resources/ports"]


def test_secret_values_are_stripped_of_the_newline_echo_leaves() -> None:
    settings = UFMSettings(endpoint="ufm")
    assert make_auth(settings, {"token": b"abc\n"}).header == "Basic abc"


def test_missing_credentials_say_which_keys_are_needed() -> None:
    settings = UFMSettings(endpoint="ufm")
    with pytest.raises(MissingCredentials, match="keys 'username' and 'password', or 'token'"):
        make_auth(settings, {"username": b"only-a-user"})
    with pytest.raises(MissingCredentials, match="credentialsDir has no non-empty files 'username' and 'password'"):
        make_auth(UFMSettings(endpoint="ufm", credentials_dir="/nowhere"), {"password": b"  \n"})
    with pytest.raises(MissingCredentials, match="no key 'token'"):
        make_auth(UFMSettings(endpoint="ufm", authentication="token"), BASIC)


@pytest.mark.parametrize("token", [b"OGUY7Tw\nLvTmFkX", "OGUY7Tw\u2013LvTmFkX".encode(), b"OGUY7Tw LvTmFkX"])
def test_a_token_a_header_cannot_carry_is_refused_without_quoting_it(ufm: FakeUFM, pki: Pki, token: bytes) -> None:
    with pytest.raises(MissingCredentials, match="token has a character an HTTP header cannot carry") as caught:
        get_ports(client_for(ufm, pki), {"token": token})
    for part in ("OGUY7Tw", "LvTmFkX"):
        assert part not in str(caught.value) and part not in repr(caught.value)
    assert ufm.seen == []


def test_a_header_http_client_refuses_is_reported_without_its_value(ufm: FakeUFM, pki: Pki) -> None:
    from volcano_topology_ufm.client import Auth

    header = "Basic " + "OGUY" + "7Tw\nLvTmFkX"  # not as one word in this source, which the traceback quotes
    with pytest.raises(UFMError, match="an invalid header value") as caught:
        client_for(ufm, pki).get_json(Auth("token", header, "/ufmRestV3"), PORTS)
    assert "OGUY7Tw" not in "".join(traceback.format_exception(caught.value))


def test_401_is_an_auth_error_and_not_retried(ufm: FakeUFM, pki: Pki) -> None:
    with pytest.raises(UFMAuthError, match=r"GET resources/ports: HTTP 401: credentials refused$"):
        get_ports(client_for(ufm, pki), {"username": b"admin", "password": b"wrong"})
    assert len(ufm.seen) == 1


def test_403_is_an_auth_error_and_not_retried(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(403, b"{}"))
    with pytest.raises(UFMAuthError, match=r"HTTP 403: not allowed for this UFM user$"):
        get_ports(client_for(ufm, pki, retries=3))
    assert len(ufm.seen) == 1


def test_redirects_are_not_followed(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(302, b"", {"Location": "https://elsewhere.example/login"}))
    with pytest.raises(UFMError, match="HTTP 302: UFM redirects"):
        get_ports(client_for(ufm, pki))
    assert len(ufm.seen) == 1


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_verified_with_a_ca_bundle_file_or_pem_text(ufm: FakeUFM, pki: Pki) -> None:
    assert get_ports(client_for(ufm, pki))
    assert get_ports(client_for(ufm, caBundle=pki.ca_cert.read_text()))


def test_tls_with_the_wrong_ca_fails_clearly_and_is_not_retried(ufm: FakeUFM, other_pki: Pki) -> None:
    with pytest.raises(UFMError, match=r"GET resources/ports: TLS failed: .*CERTIFICATE_VERIFY_FAILED") as caught:
        get_ports(client_for(ufm, caBundle=str(other_pki.ca_cert), retries=3))
    assert "attempts" not in str(caught.value)
    assert ufm.seen == []  # the handshake failed: no request (and no Authorization header) was sent


def test_tls_is_verified_by_default(ufm: FakeUFM) -> None:
    """Without caBundle the system's CAs are used, which did not sign the loopback certificate."""
    with pytest.raises(UFMError, match="TLS failed"):
        get_ports(client_for(ufm))


def test_tls_checks_the_host_name_too(pki: Pki) -> None:
    """A certificate signed by the right CA, but for another name (127.0.0.1, localhost): refused."""
    with FakeUFM(to_ufm(two_tier()), cert=(pki.serving_cert, pki.serving_key), bind="0.0.0.0") as ufm:
        port = ufm.server.server_address[1]
        assert get_ports(client_for(ufm, pki))  # by 127.0.0.1, which the certificate names
        other = UFMClient(UFMSettings.model_validate({"endpoint": f"127.0.0.2:{port}", "caBundle": str(pki.ca_cert),
                                                      **FAST, "retries": 0}))  # fmt: skip
        with pytest.raises(UFMError, match=r"TLS failed: .*(mismatch|not valid for|doesn't match)"):
            get_ports(other)
        assert len(ufm.seen) == 1  # no request went to the wrongly named one


def test_insecure_skip_verify_connects_without_verifying(ufm: FakeUFM) -> None:
    assert get_ports(client_for(ufm, insecureSkipVerify=True))


def test_api_prefix_and_an_endpoint_path_make_the_url() -> None:
    settings = UFMSettings(endpoint="https://gw.example.com/ufm/", api_prefix="custom/rest/")
    client = UFMClient(settings)
    assert client.url(make_auth(settings, BASIC), PORTS) == "https://gw.example.com/ufm/custom/rest/resources/ports"
    plain = UFMSettings(endpoint="ufm")
    assert UFMClient(plain).url(make_auth(plain, TOKEN_CREDS), PORTS) == "https://ufm/ufmRestV3/resources/ports"


def test_an_endpoint_without_scheme_is_https() -> None:
    assert UFMSettings(endpoint="ufm.example.com:8443/").base_url == "https://ufm.example.com:8443"
    assert UFMSettings(endpoint="http://10.0.0.1/proxy/").base_url == "http://10.0.0.1/proxy"


# -- transient failures and retries --------------------------------------------------------------


def test_500_is_retried_then_reported(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(500, b"<html>Internal Server Error</html>", {"Content-Type": "text/html"}))
    with pytest.raises(UFMError, match=r"GET resources/ports: HTTP 500 \(after 3 attempts\)$"):
        get_ports(client_for(ufm, pki, retries=2))
    assert len(ufm.seen) == 3


def test_transient_errors_then_success(ufm: FakeUFM, pki: Pki) -> None:
    ufm.queue(PORTS, Canned(502), Canned(503, headers={"Retry-After": "0"}), Canned(429), Canned(504))
    assert get_ports(client_for(ufm, pki, retries=4))
    assert len(ufm.seen) == 5


def test_retry_after_is_a_floor_up_to_the_maximum_backoff() -> None:
    client = UFMClient(UFMSettings(endpoint="ufm", retry_backoff=1, retry_backoff_max=10))
    assert 1.0 <= client._backoff(1, None) <= 1.1
    assert 4.0 <= client._backoff(3, None) <= 4.4
    assert client._backoff(1, 5.0) == 5.0
    assert client._backoff(1, 600.0) == 10.0
    assert 10.0 <= client._backoff(8, None) <= 11.0


def test_retry_after_as_seconds_or_an_http_date() -> None:
    import email.utils
    import time

    from volcano_topology_ufm.client import _retry_after

    assert _retry_after("7") == 7.0
    later = _retry_after(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert later is not None and 50 <= later <= 61
    assert _retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert _retry_after("soon") is None and _retry_after(None) is None


def test_no_retries_when_retries_is_zero(ufm: FakeUFM, pki: Pki) -> None:
    ufm.queue(PORTS, Canned(503))
    with pytest.raises(UFMError, match=r"HTTP 503$"):
        get_ports(client_for(ufm, pki, retries=0))
    assert len(ufm.seen) == 1


def test_a_slow_answer_times_out_and_is_retried(ufm: FakeUFM, pki: Pki) -> None:
    good = ufm.answers[PORTS]
    ufm.queue(PORTS, Canned(200, good.body, good.headers, delay=1.0))
    assert get_ports(client_for(ufm, pki, timeout="200ms", connectTimeout="200ms", retries=1))
    assert len(ufm.seen) == 2


def test_timeouts_exhaust_the_retries(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(200, b"[]", delay=0.6))
    with pytest.raises(UFMError, match=r"no answer within 0.2s \(after 2 attempts\)"):
        get_ports(client_for(ufm, pki, timeout="200ms", connectTimeout="200ms", retries=1))


def test_a_body_trickling_in_is_cut_off_at_the_request_timeout(ufm: FakeUFM, pki: Pki) -> None:
    """Each piece comes well within the read timeout, but the whole body would take 40 x 50 ms: the request's
    ``timeout`` is its total time, so the client gives up long before UFM has sent it all."""
    body = b"[" + b"1," * 319 + b"1]"  # 641 bytes: 41 pieces
    ufm.set(PORTS, Canned(200, body, trickle=0.05))
    with pytest.raises(UFMError, match=r"answer not complete within 0.3s"):
        get_ports(client_for(ufm, pki, timeout="300ms", connectTimeout="300ms", retries=0))
    assert ufm.trickled < 41  # not read to the end


def test_the_scan_timeout_bounds_all_attempts(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(200, b"[]", delay=0.6))
    client = client_for(ufm, pki, timeout="300ms", connectTimeout="300ms", scanTimeout="500ms", retries=10)
    with pytest.raises(UFMError):
        get_ports(client)
    assert len(ufm.seen) <= 2  # not 11: the scan's budget ran out


def test_a_connection_cut_mid_body_is_retried(ufm: FakeUFM, pki: Pki) -> None:
    good = ufm.answers[PORTS]
    ufm.queue(PORTS, Canned(200, good.body, good.headers, cut_after=50))
    assert get_ports(client_for(ufm, pki, retries=1)) == json.loads(good.body)
    assert len(ufm.seen) == 2


def test_nothing_listening_is_a_transient_error() -> None:
    from volcano_topology.controlplane.cluster import free_port

    settings = UFMSettings.model_validate({"endpoint": f"http://127.0.0.1:{free_port()}", **FAST, "retries": 1})
    with pytest.raises(UFMError, match=r"GET resources/ports: .*refused.*\(after 2 attempts\)"):
        get_ports(UFMClient(settings))


# -- odd answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canned", "message"),
    [
        (Canned(200, b""), "GET resources/ports: empty answer"),
        (Canned(200, b'[{"description": "Computer IB Port", "system_na'), r"not JSON at byte \d+ \(cut off\?\)"),
        (Canned(200, b"<!DOCTYPE html><html><body>Login</body></html>"), "UFM answered an HTML page, not JSON"),
        (Canned(200, b"[]", {"Content-Type": "text/html"}), "UFM answered an HTML page, not JSON"),
        (Canned(200, b"\xff\xfe not utf-8"), "answer is not JSON"),
        (Canned(200, b"[" + b"1," * 700 + b"1]"), "answer of 1403 bytes is above maxResponseBytes 1024"),
    ],
    ids=["empty", "truncated", "html", "html-content-type", "binary", "too-big"],
)
def test_odd_answers_are_refused_and_not_retried(ufm: FakeUFM, pki: Pki, canned: Canned, message: str) -> None:
    ufm.set(PORTS, canned)
    with pytest.raises(UFMDataError, match=message):
        get_ports(client_for(ufm, pki, maxResponseBytes=1024))
    assert len(ufm.seen) == 1


def test_404_says_what_to_check_and_is_not_retried(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(404, b"{}"))
    with pytest.raises(UFMError, match=r"HTTP 404 \(check endpoint and apiPrefix\)$"):
        get_ports(client_for(ufm, pki, retries=3))
    assert len(ufm.seen) == 1


def test_json_nested_too_deeply_is_refused_clearly(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(200, b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(UFMDataError, match=r"answer is not JSON that UFM sends \(nested too deeply\)"):
        get_ports(client_for(ufm, pki))


def test_a_body_beyond_the_limit_without_a_length_is_cut_off_while_reading(ufm: FakeUFM, pki: Pki) -> None:
    """The limit holds while reading too, not only from Content-Length (which a server may omit)."""
    ufm.set(PORTS, Canned(200, b"[" + b"1," * 70000 + b"1]", length=False))
    with pytest.raises(UFMDataError, match="answer is above maxResponseBytes 1024, refused"):
        get_ports(client_for(ufm, pki, maxResponseBytes=1024))


def test_a_body_without_a_length_within_the_limit_is_read(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(200, b"[1, 2]", length=False))
    assert get_ports(client_for(ufm, pki)) == [1, 2]


def test_an_empty_list_parses_as_an_empty_list(ufm: FakeUFM, pki: Pki) -> None:
    ufm.set(PORTS, Canned(200, b"[]"))
    assert get_ports(client_for(ufm, pki)) == []  # refused later, by the fabric check (see test_ufm_provider)


# -- credentials never leak ------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [BASIC, TOKEN_CREDS], ids=["basic", "token"])
@pytest.mark.parametrize(
    "canned",
    [Canned(401, b""), Canned(500), Canned(200, b"<html/>"), Canned(200, b"[1,"), Canned(200, b"[]", delay=0.5)],
    ids=["401", "500", "html", "truncated", "timeout"],
)
def test_credentials_appear_in_no_error_log_or_repr(
    ufm: FakeUFM, pki: Pki, caplog: pytest.LogCaptureFixture, credentials: dict[str, bytes], canned: Canned
) -> None:
    caplog.set_level(logging.DEBUG)
    ufm.set(PORTS, canned)
    client = client_for(ufm, pki, retries=1, timeout="200ms", connectTimeout="200ms")
    auth = make_auth(client.settings, credentials)
    with pytest.raises((UFMError, UFMDataError)) as caught:
        client.get_json(auth, PORTS)
    seen = [str(caught.value), repr(caught.value), caplog.text, repr(client), repr(auth), repr(client.settings)]
    for text in seen:
        for secret in SECRETS:
            assert secret not in text
    assert "GET resources/ports" in str(caught.value)
