"""A real kube-apiserver + etcd on loopback: TLS, token authentication, RBAC.

Used by the test suite (as a pytest fixture) and by ``volcano-topology dev``.
It stops only the processes it started, and children die with their parent
(``PR_SET_PDEATHSIG``), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from volcano_topology.controlplane.build import Binaries, ensure_binaries
from volcano_topology.controlplane.pki import Pki, make_pki

log = logging.getLogger(__name__)

ADMIN_USER = "volcano-topology-admin"
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """kube-apiserver or etcd did not start, or a harness request failed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Process:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        # PR_SET_PDEATHSIG fires when the spawning *thread* exits, so it is only safe from the
        # main thread; a process started elsewhere is stopped at interpreter exit instead.
        in_main_thread = threading.current_thread() is threading.main_thread()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if in_main_thread else None,
            start_new_session=True,
        )
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)  # a paused process would hold SIGTERM until the kill
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class LocalControlPlane:
    """Start with ``start()`` or as a context manager; ``kubeconfig`` is the admin's."""

    workdir: Path
    binaries: Binaries | None = None
    # False: missing binaries are an error naming the build command, never a build here.
    build: bool = True
    startup_timeout: float = 90.0
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    etcd_port: int = 0
    apiserver_port: int = 0
    pki: Pki | None = None
    started_seconds: float = 0.0
    _etcd: _Process | None = None
    _apiserver: _Process | None = None

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        self.binaries = self.binaries or ensure_binaries(build=self.build)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        (self.workdir / "tokens.csv").write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        try:
            self._start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        self.write_kubeconfig(self.kubeconfig, self.admin_token, ADMIN_USER)
        self.started_seconds = time.monotonic() - started
        log.info("control plane ready at %s in %.1fs", self.url, self.started_seconds)

    def stop(self) -> None:
        for process in (self._apiserver, self._etcd):
            if process is not None:
                process.stop()

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (etcd keeps the data), e.g. to test an outage."""
        if self._apiserver is not None:
            self._apiserver.stop()

    def pause_etcd(self) -> None:
        """SIGSTOP etcd: requests hang (no error, no answer) until :meth:`resume_etcd`, as with a stalled disk."""
        self._signal_etcd(signal.SIGSTOP)

    def resume_etcd(self) -> None:
        self._signal_etcd(signal.SIGCONT)

    def _signal_etcd(self, sig: signal.Signals) -> None:
        if self._etcd is None or self._etcd.popen is None:
            raise RuntimeError("etcd is not running")
        self._etcd.popen.send_signal(sig)

    @property
    def apiserver_pid(self) -> int | None:
        return self._apiserver.popen.pid if self._apiserver is not None and self._apiserver.popen is not None else None

    def start_apiserver(self) -> None:
        """(Re)start kube-apiserver on the same port and wait until it is ready."""
        assert self.binaries is not None and self.pki is not None
        self.apiserver_port = self.apiserver_port or free_port()
        self._apiserver = _Process("kube-apiserver", self._apiserver_argv(), self.workdir / "kube-apiserver.log")
        self._apiserver.start()
        self._wait_ready()

    # -- addresses and identities ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def log_files(self) -> list[Path]:
        return [self.workdir / "etcd.log", self.workdir / "kube-apiserver.log"]

    def write_kubeconfig(self, path: Path, token: str, user: str, server: str | None = None) -> Path:
        """A kubeconfig for ``token``; ``server`` lets a test point it at a proxy instead."""
        assert self.pki is not None
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": server or self.url, "certificate-authority": str(self.pki.ca_cert)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """A raw HTTPS request as the admin (or ``token``): for harness chores and probes."""
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token or self.admin_token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=context, timeout=10) as response:
                payload = response.read()
                status: int = response.status
        except urllib.error.HTTPError as exc:
            payload, status = exc.read(), exc.code
        try:
            return status, json.loads(payload) if payload else None
        except json.JSONDecodeError:
            return status, payload.decode(errors="replace")

    def mint_token(self, namespace: str, service_account: str, expiration_seconds: int = 3600) -> str:
        """A ServiceAccount token through the TokenRequest API (creating namespace and account if needed)."""
        for path, body in (
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            (
                f"/api/v1/namespaces/{namespace}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account}},
            ),
        ):
            status, answer = self.request("POST", path, body)
            if status not in (201, 409):
                raise ControlPlaneError(f"POST {path}: HTTP {status}: {answer}")
        status, answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        if status != 201:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{service_account}: HTTP {status}: {answer}")
        token: str = answer["status"]["token"]
        return token

    # -- internals -------------------------------------------------------------------

    def _start_etcd(self) -> None:
        assert self.binaries is not None
        self.etcd_port = free_port()
        peer = free_port()
        data = self.workdir / "etcd-data"
        argv = [
            str(self.binaries.etcd),
            "--name",
            "local",
            "--data-dir",
            str(data),
            "--listen-client-urls",
            f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"local=http://127.0.0.1:{peer}",
            "--log-level",
            "warn",
            # Test data is disposable: skipping fsync makes etcd several times faster on slow disks.
            "--unsafe-no-fsync",
        ]
        self._etcd = _Process("etcd", argv, self.workdir / "etcd.log")
        self._etcd.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self._etcd.alive():
                raise ControlPlaneError(f"etcd exited during startup:\n{self._etcd.tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError, json.JSONDecodeError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as response,
            ):
                if json.loads(response.read()).get("health") == "true":
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"etcd not healthy within 30s:\n{self._etcd.tail()}")

    def _apiserver_argv(self) -> list[str]:
        assert self.binaries is not None and self.pki is not None
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
        ]

    def _wait_ready(self) -> None:
        assert self._apiserver is not None
        deadline = time.monotonic() + self.startup_timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not self._apiserver.alive():
                raise ControlPlaneError(f"kube-apiserver exited during startup:\n{self._apiserver.tail()}")
            with contextlib.suppress(OSError, ssl.SSLError):
                status, last = self.request("GET", "/readyz")
                # The bootstrap controller creates system namespaces shortly after readiness.
                if status == 200 and self.request("GET", "/api/v1/namespaces/default")[0] == 200:
                    return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver not ready within {self.startup_timeout:.0f}s (last /readyz: {last}):\n"
            f"{self._apiserver.tail()}"
        )
