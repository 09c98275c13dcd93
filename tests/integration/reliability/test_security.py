"""Security (issue 13, item 7), against a control plane of this module's own.

- **Credentials never leak**: the operator runs as a process with providers whose credentials come from
  Secrets (UFM with username/password, UFM with a token, ibnetdiscover over HTTPS with basic auth) and
  from the configuration itself (an endpoint and a URL with ``user:password@``), against a loopback HTTPS
  server that refuses them and then answers garbage, so that errors are logged, counted and replied.
  Then the log, every Event, ``/metrics``, ``/readyz``, every HyperNode and the replies are searched for
  each secret value, raw and base64 (and the basic-auth pair), and none is found.
- **TLS verified by default** at every place that connects out: the UFM client, the ibnetdiscover URL
  source, the Kubernetes client and the operator process (kopf and the writer) refuse a server whose
  certificate the system CAs did not sign, before sending a request; plain-http UFM is warned about.
- **Never writes what it does not own**: a provider emitting the bystanders' names and one emitting a
  name another source owns are refused (the reply names the object and the ownership rule); the
  bystanders and the other source's object stay byte for byte unchanged.
- **Least privilege**: the RBAC of deploy/ (base and both overlays) and of the Helm chart (same three
  configurations) is applied to the real API server and a SubjectAccessReview for its ServiceAccount
  checks what it needs is allowed (tests/integration/test_deploy_kustomize.py's ``must_allow``) and what
  it must never do is denied (its ``must_deny`` plus the extra list below: the CRD, Volcano's admission
  policy, other components' Leases, other namespaces' Secrets, pod exec, node proxy, CSR approval ...).
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from kubernetes import client

from tests.conftest import ROOT
from tests.integration.operator_harness import OperatorProcess, provider_dir, static_leaf, write_config
from tests.integration.reliability.conftest import Figures, seed_bystanders
from tests.integration.test_deploy_kustomize import ACCOUNT, NS, Check, must_allow, must_deny
from tests.unit.test_deploy_manifests import KUBECTL, TARGETS, helm_template, kustomize, values_for
from volcano_topology import kube, ownership
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(private_control_plane: LocalControlPlane) -> Iterator[client.ApiClient]:
    made = kube.api_client(private_control_plane.kubeconfig)
    yield made
    made.close()


@pytest.fixture
def operators() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        operator.stop(signal.SIGKILL if operator.process and operator.process.poll() is None else signal.SIGTERM)


def hypernodes(api: client.ApiClient) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    return {item["metadata"]["name"]: item for item in listed["items"]}


def delete_hypernodes(api: client.ApiClient, names: list[str]) -> None:
    for name in names:
        try:
            client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def with_entry_points(directory: Path, extra: dict[str, str]) -> Path:
    """More source names for installed providers (a source is an entry point's name)."""
    entry_points = directory / "volcano_topology_test_providers-0.1.dist-info" / "entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "".join(f"{k} = {v}\n" for k, v in extra.items()))
    return directory


# -- a loopback HTTPS server that refuses, then answers garbage ------------------------------------------


class Garbage:
    """HTTPS on 127.0.0.1 answering every request in turn with a refusal (401, 403) or a broken answer."""

    ANSWERS: ClassVar[list[tuple[int, str, bytes]]] = [
        (401, "application/json", b'{"error": "Unauthorized"}'),
        (403, "application/json", b'{"error": "Forbidden"}'),
        (200, "text/html", b"<html><body>login</body></html>"),
        (200, "application/json", b"[1, 2,"),
        (200, "application/json", b'{"data": "not a list"}'),
        (500, "text/plain", b"internal error"),
        (200, "application/json", b"[]"),
    ]

    def __init__(self, cert: tuple[Path, Path] | None) -> None:
        self.authorizations: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.authorizations.append((self.path, self.headers.get("Authorization")))
                status, kind, body = outer.ANSWERS[(len(outer.authorizations) - 1) % len(outer.ANSWERS)]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def garbage(private_control_plane: LocalControlPlane) -> Iterator[Garbage]:
    pki = private_control_plane.pki
    assert pki is not None
    server = Garbage((pki.serving_cert, pki.serving_key))  # signed by the control plane's CA, for 127.0.0.1
    yield server
    server.close()


@pytest.fixture
def self_signed(private_control_plane: LocalControlPlane) -> Iterator[Garbage]:
    """The same certificate, but nobody tells the client its CA: to the system's CAs it is self-signed."""
    pki = private_control_plane.pki
    assert pki is not None
    server = Garbage((pki.serving_cert, pki.serving_key))
    yield server
    server.close()


# -- credentials ------------------------------------------------------------------------------------------


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret_forms(values: list[str], user: str, password: str) -> dict[str, str]:
    """Every way a secret could show: raw, base64 (as in a Secret or an Authorization header), the basic pair."""
    forms: dict[str, str] = {}
    for value in values:
        forms[f"raw {value[:6]}..."] = value
        forms[f"base64 {value[:6]}..."] = b64(value)
    forms["basic pair"] = b64(f"{user}:{password}")
    forms["user:password"] = f"{user}:{password}"
    return forms


def http_text(operator: OperatorProcess, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}{path}", timeout=5) as response:
            return str(response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode(errors="replace"))


def test_credentials_never_appear_in_logs_events_metrics_or_replies(
    private_control_plane: LocalControlPlane, api: client.ApiClient, garbage: Garbage, tmp_path: Path,
    operators: list[OperatorProcess], figures: Figures,
) -> None:  # fmt: skip
    plane = private_control_plane
    assert plane.pki is not None
    bystanders = seed_bystanders(api)
    user, password, token = f"ufm-{secrets.token_hex(4)}", f"Pw-{secrets.token_hex(8)}", secrets.token_hex(16)
    config_user, config_password = f"cfg-{secrets.token_hex(4)}", f"CfgPw-{secrets.token_hex(8)}"
    core = client.CoreV1Api(api)
    for name, data in (("sec-basic", {"username": user, "password": password}), ("sec-token", {"token": token})):
        body = {"metadata": {"name": name}, "data": {k: b64(v) for k, v in data.items()}}
        try:
            core.create_namespaced_secret("default", body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            core.replace_namespaced_secret(name, "default", body)
    ca = str(plane.pki.ca_cert)
    ufm = {"caBundle": ca, "retries": 0, "timeout": "2s", "connectTimeout": "2s", "scanTimeout": "5s"}
    providers = with_entry_points(provider_dir(tmp_path / "providers"), {
        "ufm-token": "volcano_topology_ufm.provider:UFMProvider",
        "ufm-in-config": "volcano_topology_ufm.provider:UFMProvider",
        "ib-in-config": "volcano_topology_ibnetdiscover.provider:IBNetDiscoverProvider",
    })  # fmt: skip

    def secret(name: str) -> dict[str, Any]:
        return {"secretRef": {"name": name, "namespace": "default"}}

    entries = [
        {"source": "ufm", "interval": "1s", "credentials": secret("sec-basic"),
         "config": {"endpoint": f"https://{garbage.address}", "authentication": "basic", **ufm}},
        {"source": "ufm-token", "interval": "1s", "credentials": secret("sec-token"),
         "config": {"endpoint": f"https://{garbage.address}", "authentication": "token", **ufm}},
        {"source": "ibnetdiscover", "interval": "1s", "credentials": secret("sec-basic"),
         "config": {"url": f"https://{garbage.address}/dump", "caFile": ca, "timeout": 2}},
        # A provider that is refused (a bystander's name), holding the token: its reply must not show it.
        {"source": "static", "interval": "1s", "credentials": secret("sec-token"),
         "config": {"hypernodes": [static_leaf("bystander-manual", "n0")]}},
        # Credentials where they must not be: in the configuration. Refused, without quoting them.
        {"source": "ufm-in-config", "config": {"endpoint": f"https://{config_user}:{config_password}@{garbage.address}"}},
        {"source": "ib-in-config",
         "config": {"url": f"https://{config_user}:{config_password}@{garbage.address}/dump", "caFile": ca}},
    ]  # fmt: skip
    # From a ConfigMap, as deployed: configuration errors then become Events on it (a file has none).
    text = yaml.safe_dump({"networkTopologyDiscovery": entries, "operator": {"leaderElection": {"enabled": False}}})
    config_map = {"metadata": {"name": "vt-security"}, "data": {"config.yaml": text}}
    try:
        core.create_namespaced_config_map("default", config_map)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map("vt-security", "default", config_map)
    operator = OperatorProcess(plane.kubeconfig, tmp_path, config_map="default/vt-security",
                               provider_path=providers).start()  # fmt: skip
    operators.append(operator)

    def failing(source: str, at_least: int) -> bool:
        return operator.metric("volcano_topology_scan_failures_total", provider=source) >= at_least

    operator.wait(lambda: failing("ufm", 4) and failing("ufm-token", 4) and failing("ibnetdiscover", 3),
                  within=90, what="scans failing on auth and garbage")  # fmt: skip
    operator.wait(lambda: "not applied" in operator.log.read_text(errors="replace"), what="the static reply")
    operator.wait(lambda: len(client.CoreV1Api(api).list_namespaced_event("default").items) >= 1,
                  what="Events about the configuration")  # fmt: skip
    time.sleep(1.5)  # a provider restart's backoff and Event, if any, land now
    # The credentials were really used (so that they could have leaked): the server saw both headers.
    seen = {auth for _, auth in garbage.authorizations}
    assert f"Basic {b64(f'{user}:{password}')}" in seen and f"Basic {token}" in seen, "credentials not sent"

    events = client.CoreV1Api(api).list_event_for_all_namespaces()
    places = {
        "operator log": operator.log.read_text(errors="replace"),
        "events": json.dumps(api.sanitize_for_serialization(events)),
        "/metrics": http_text(operator, "/metrics"),
        "/readyz": http_text(operator, "/readyz"),
        "/healthz": http_text(operator, "/healthz"),
        "hypernodes": json.dumps(hypernodes(api)),
        "replies": "\n".join(line for line in operator.log.read_text(errors="replace").splitlines()
                             if "not applied" in line),
    }  # fmt: skip
    assert places["replies"] and events.items, "nothing to search"
    log = places["operator log"]
    assert "credentials" in log and "endpoint must not carry credentials" in log, "the in-config endpoint refused"
    assert "url must not carry credentials" in log, "the in-config URL refused"
    # The operator's own credential too: the bearer token of its kubeconfig.
    kube_token = next(u["user"]["token"] for u in yaml.safe_load(plane.kubeconfig.read_text())["users"])
    forms = {
        **secret_forms([user, password, token], user, password),
        **secret_forms([config_user, config_password], config_user, config_password),
        "kubeconfig token": kube_token,
        "kubeconfig token, base64": b64(kube_token),
    }
    found = [(what, where) for what, value in forms.items() for where, text in places.items() if value in text]
    operator.stop()
    checked = bystanders.check()
    figures.record(
        trials=1, faults_injected=len(garbage.authorizations), objects_checked=len(events.items) + len(places),
        lost=0, secrets_checked=len(forms), places_grepped=len(places), events_grepped=len(events.items),
        log_bytes_grepped=len(log), server_requests=len(garbage.authorizations), leaks=len(found),
        bystanders_checked=checked,
    )  # fmt: skip
    assert found == [], f"secrets found: {found}"


# -- TLS verified by default ------------------------------------------------------------------------------


def test_tls_is_verified_by_default_everywhere(
    private_control_plane: LocalControlPlane, self_signed: Garbage, tmp_path: Path, operators: list[OperatorProcess],
    api: client.ApiClient, caplog: pytest.LogCaptureFixture, figures: Figures,
) -> None:  # fmt: skip
    import logging
    import sys

    sys.path.insert(0, str(ROOT / "providers" / "ufm" / "tests"))
    from ufm_testlib import run_scans
    from volcano_topology_ibnetdiscover.provider import IBNetDiscoverProvider
    from volcano_topology_ibnetdiscover.settings import IBNetDiscoverSettings
    from volcano_topology_ibnetdiscover.sources import SourceError
    from volcano_topology_ufm.client import UFMClient, UFMError, make_auth
    from volcano_topology_ufm.provider import UFMProvider
    from volcano_topology_ufm.settings import UFMSettings

    places: dict[str, str] = {}
    creds = {"username": b"u", "password": b"p"}

    # 1. The UFM client, with its defaults: the handshake fails, no request (no Authorization header) is sent.
    settings = UFMSettings(endpoint=self_signed.address, retries=0)
    assert settings.base_url.startswith("https://"), "no scheme means https"
    with pytest.raises(UFMError, match=r"TLS failed: .*CERTIFICATE_VERIFY_FAILED"):
        UFMClient(settings).get_json(make_auth(settings, creds), "resources/ports")
    places["ufm client"] = "refused"

    # 2. The ibnetdiscover URL source, with its defaults.
    provider = IBNetDiscoverProvider(IBNetDiscoverSettings(url=f"https://{self_signed.address}/dump"))
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        provider.read()
    places["ibnetdiscover url"] = "refused"
    assert self_signed.authorizations == [], "a request went out before the certificate was checked"

    # 3. The Kubernetes client from a kubeconfig that names no CA: the API server's own CA is no system CA.
    no_ca = yaml.safe_load(private_control_plane.kubeconfig.read_text())
    for cluster in no_ca["clusters"]:
        cluster["cluster"].pop("certificate-authority", None)
        cluster["cluster"].pop("certificate-authority-data", None)
    (tmp_path / "no-ca.kubeconfig").write_text(yaml.safe_dump(no_ca))
    untrusting = kube.api_client(tmp_path / "no-ca.kubeconfig")
    assert untrusting.configuration.verify_ssl is True
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        client.CoreV1Api(untrusting).list_namespace(_request_timeout=5)
    untrusting.close()
    places["kube client"] = "refused"

    # 4. The operator process (kopf's connection and ours) with that kubeconfig: it writes nothing and says why.
    config = write_config(tmp_path / "c.yaml", [{"source": "emulated", "config": {"modelFile": "tiny-8"}}])
    before = set(hypernodes(api))
    operator = OperatorProcess(tmp_path / "no-ca.kubeconfig", tmp_path, config=config).start()
    operators.append(operator)
    operator.wait(lambda: "certificate verify failed" in operator.log.read_text(errors="replace").lower()
                  or "certificate_verify_failed" in operator.log.read_text(errors="replace").lower(),
                  within=60, what="the operator refusing the API server's certificate")  # fmt: skip
    assert operator.ready().get("ready") is not True
    operator.stop(signal.SIGKILL)
    assert set(hypernodes(api)) == before, "the operator wrote through an unverified connection"
    places["operator process"] = "refused"

    # 5. Plain http to UFM is allowed (Volcano allows it) but warned about, credentials being readable on the wire.
    caplog.set_level(logging.WARNING)
    quick = {"retries": 0, "timeout": "1s", "connectTimeout": "1s", "scanTimeout": "2s"}
    plain = UFMProvider(UFMSettings.model_validate({"endpoint": f"http://{self_signed.address}", **quick}))
    run_scans(plain, creds, lambda p, _: p.stats.failures >= 1, within=20)
    assert "plain http://" in caplog.text and "unencrypted" in caplog.text
    figures.record(trials=1, faults_injected=len(places), objects_checked=len(places), lost=0,
                   tls_places=len(places), places=sorted(places), plain_http_warned=True)  # fmt: skip


# -- never writes what it does not own -------------------------------------------------------------------


def test_objects_of_others_are_refused_and_left_byte_for_byte(
    private_control_plane: LocalControlPlane, api: client.ApiClient, tmp_path: Path,
    operators: list[OperatorProcess], figures: Figures,
) -> None:  # fmt: skip
    bystanders = seed_bystanders(api)
    delete_hypernodes(api, ["owned-by-static"])
    providers = provider_dir(tmp_path / "providers")
    first = [{"source": "static", "interval": "1s", "config": {"hypernodes": [static_leaf("owned-by-static", "s0")]}}]
    config = write_config(tmp_path / "c.yaml", first)
    operator = OperatorProcess(private_control_plane.kubeconfig, tmp_path, config=config,
                               provider_path=providers).start()  # fmt: skip
    operators.append(operator)
    operator.wait(lambda: "owned-by-static" in hypernodes(api), what="static's own object")
    operator.wait(lambda: bool((hypernodes(api)["owned-by-static"].get("status") or {}).get("conditions")),
                  what="its status")  # fmt: skip
    time.sleep(1)
    theirs = hypernodes(api)["owned-by-static"]
    assert ownership.owner_of(theirs["metadata"]["labels"]) == "static"

    # static2 claims all three bystanders' names and static's object, with other members.
    claims = ["bystander-manual", "bystander-volcano-ufm", "bystander-other-operator", "owned-by-static"]
    intruding = [static_leaf(name, f"intruder-{i}") for i, name in enumerate(claims)]
    second = [*first, {"source": "static2", "interval": "1s", "config": {"hypernodes": intruding}}]
    write_config(config, second)

    def replies() -> list[str]:
        return [line for line in operator.log.read_text(errors="replace").splitlines() if "not applied" in line]

    operator.wait(lambda: all(any(name in line for line in replies()) for name in claims), within=60,
                  what="a reply naming every claimed object")  # fmt: skip
    time.sleep(3)  # several more scans (interval 1s), each refused again
    for name in claims:
        line = next(line for line in replies() if name in line)
        assert "belongs to" in line, f"the reply does not say the ownership rule: {line}"
    refused = operator.metric("volcano_topology_failures_total", provider="static2")
    written = operator.metric("volcano_topology_writes_total", provider="static2")
    operator.stop()
    checked = bystanders.check()
    assert hypernodes(api)["owned-by-static"] == theirs, "static's object was changed by static2"
    delete_hypernodes(api, ["owned-by-static"])
    figures.record(trials=1, faults_injected=len(claims), objects_checked=checked + 1, lost=0,
                   bystanders_checked=checked, foreign_owned_checked=1, refusals_counted=refused,
                   writes_by_intruder=written, replies=len(replies()))  # fmt: skip
    assert written == 0


# -- least privilege: SubjectAccessReview against the applied RBAC ------------------------------------

RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
CRD = "hypernodes.topology.volcano.sh"


def extra_denials(ns: str) -> list[Check]:
    """Beyond must_deny: what would let a compromised operator break Volcano or the cluster."""
    admission = "admissionregistration.k8s.io"
    return [
        Check("delete", "customresourcedefinitions", "apiextensions.k8s.io", name=CRD),
        Check("patch", "customresourcedefinitions", "apiextensions.k8s.io", name=CRD),
        *(
            Check(v, r, admission)
            for r in (
                "validatingadmissionpolicies",
                "validatingadmissionpolicybindings",
                "validatingwebhookconfigurations",
                "mutatingwebhookconfigurations",
            )
            for v in ("create", "patch", "delete")
        ),
        Check("get", "secrets", namespace="volcano-system", name="ufm-credentials"),
        Check("get", "secrets", namespace="kube-system"),
        Check("get", "configmaps", namespace="kube-system", name="kube-root-ca.crt"),
        Check("update", "leases", "coordination.k8s.io", "kube-system", "kube-controller-manager"),
        Check("update", "leases", "coordination.k8s.io", "kube-system", "kube-scheduler"),
        Check("update", "leases", "coordination.k8s.io", "volcano-system", "vc-controller-manager"),
        Check("create", "pods", namespace="kube-system", subresource="exec"),
        Check("create", "pods", namespace=ns, subresource="portforward"),
        Check("get", "nodes", subresource="proxy"),
        Check("update", "certificatesigningrequests", "certificates.k8s.io", subresource="approval"),
        Check("create", "serviceaccounts", namespace="kube-system", subresource="token"),
        Check("create", "tokenreviews", "authentication.k8s.io"),
        Check("delete", "pods", namespace="kube-system"),
        Check("delete", "hypernodes", "topology.volcano.sh", subresource="status"),
        Check("create", "jobs", "batch.volcano.sh", "default"),
        Check("update", "queues", "scheduling.volcano.sh"),
        Check("update", "persistentvolumes"),
        Check("update", "namespaces", name=ns, subresource="finalize"),
    ]


def relocate(docs: list[dict[str, Any]], namespace: str, suffix: str) -> list[dict[str, Any]]:
    """The install's identity and RBAC under another namespace and names, so that six installs live side by side."""
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for doc in docs:
        if doc["kind"] not in (*RBAC_KINDS, "ServiceAccount"):
            continue
        doc = json.loads(json.dumps(doc))
        meta = doc["metadata"]
        if meta.get("namespace", NS) == NS and doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            meta["namespace"] = namespace
        if doc["kind"] in RBAC_KINDS:
            meta["name"] += suffix
        if "roleRef" in doc:
            doc["roleRef"]["name"] += suffix
            for subject in doc.get("subjects") or []:
                if subject.get("namespace") == NS:
                    subject["namespace"] = namespace
        out.append(doc)
    return out


def subject_allowed(plane: LocalControlPlane, namespace: str, check: Check) -> bool:
    """SubjectAccessReview, asked by the admin about the ServiceAccount (its user name and groups)."""
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{ACCOUNT}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            "resourceAttributes": {k: v for k, v in vars(check).items() if v},
        },
    }
    status, answer = plane.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
    assert status == 201, answer
    return bool(answer["status"]["allowed"])


def apply_all(plane: LocalControlPlane, docs: list[dict[str, Any]]) -> None:
    """``kubectl apply``, as deploy/README.md does (the API server checks RBAC escalation on the way in)."""
    result = subprocess.run([KUBECTL, "--kubeconfig", str(plane.kubeconfig), "apply", "-f", "-"],
                            input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deployed_service_account_can_do_only_what_it_needs(
    private_control_plane: LocalControlPlane, api: client.ApiClient, tmp_path: Path, figures: Figures
) -> None:
    plane = private_control_plane
    installs: dict[str, list[dict[str, Any]]] = {}
    for index, (target, config_file) in enumerate(TARGETS.items()):
        installs[f"kustomize {target}"] = relocate(kustomize(ROOT / target), f"vt-k{index}", f"-k{index}")
        helm_docs = helm_template(values_for(config_file), tmp_path)
        installs[f"helm ({target} config)"] = relocate(helm_docs, f"vt-h{index}", f"-h{index}")
    allowed_total, denied_total, wrong = 0, 0, []
    for install, docs in installs.items():
        namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
        assert any(d["kind"] == "ServiceAccount" for d in docs), install
        apply_all(plane, docs)
        target = install.split(" ", 1)[1].strip("()").removesuffix(" config")
        allow = must_allow(namespace, "volcano-topology", "volcano-topology")
        deny = [*must_deny(namespace, "volcano-topology", "volcano-topology"), *extra_denials(namespace)]
        nodes = [Check(v, "nodes") for v in ("get", "list", "watch")]
        secret = Check("get", "secrets", namespace=namespace, name="ufm-credentials")
        (allow if "label-provider" in target else deny).extend(nodes)
        (allow if target.endswith("ufm") else deny).append(secret)
        wrong += [f"{install}: denied {c}" for c in allow if not subject_allowed(plane, namespace, c)]
        wrong += [f"{install}: ALLOWED {c}" for c in deny if subject_allowed(plane, namespace, c)]
        allowed_total += len(allow)
        denied_total += len(deny)
    figures.record(trials=len(installs), faults_injected=denied_total, objects_checked=allowed_total + denied_total,
                   lost=0, rbac_checks={"allowed": allowed_total, "denied": denied_total}, installs=sorted(installs),
                   wrong=len(wrong))  # fmt: skip
    assert wrong == [], "\n".join(wrong)
