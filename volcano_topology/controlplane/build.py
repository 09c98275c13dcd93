"""Find or build the kube-apiserver and etcd binaries a local control plane needs.

Lookup order:

1. ``KUBEBUILDER_ASSETS`` (the envtest convention): a directory holding
   ``kube-apiserver`` and ``etcd``. When set, nothing is ever built.
2. The cache (``$VOLCANO_TOPOLOGY_CACHE`` or ``~/.cache/volcano-topology``),
   keyed by the pinned versions below.
3. A build from the Go module proxy with the machine's Go toolchain, written
   into the cache atomically under a file lock, so concurrent callers build once.

``k8s.io/kubernetes`` is not importable as a library: its ``go.mod`` replaces
each ``k8s.io/<staging repo>`` with a local path. The build module therefore
replaces every one of them with the published ``v0.<minor>.<patch>``, a list
generated from that release's own ``go.mod``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"

_GO_VERSION = re.compile(r"go(\d+)\.(\d+)")
# A cold kube-apiserver build is silent for minutes: say it is still going this often.
HEARTBEAT = 30.0

Progress = Callable[[str], None]


def _log_progress(line: str) -> None:
    log.warning("%s", line)


class BuildError(RuntimeError):
    """The control-plane binaries could not be found or built."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kubernetes_version: str
    etcd_version: str


def cache_root() -> Path:
    explicit = os.environ.get("VOLCANO_TOPOLOGY_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "volcano-topology"


def ensure_binaries(*, build: bool = True, progress: Progress | None = None) -> Binaries:
    """Return usable binaries, building them into the cache when missing.

    With ``build=False`` a missing binary is a ``BuildError`` that says how to build it,
    so nothing slow ever runs where a timeout could cut it (a test fixture, say).
    ``progress`` receives a line when a build starts, every ``HEARTBEAT`` seconds while
    it runs, and when it ends.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        apiserver, etcd = Path(assets) / "kube-apiserver", Path(assets) / "etcd"
        for binary in (apiserver, etcd):
            if not os.access(binary, os.X_OK):
                raise BuildError(f"KUBEBUILDER_ASSETS={assets}: {binary.name} is missing or not executable")
        return Binaries(apiserver, etcd, "from KUBEBUILDER_ASSETS", "from KUBEBUILDER_ASSETS")

    root = cache_root() / "control-plane"
    apiserver = root / f"kube-apiserver-{KUBERNETES_VERSION}" / "kube-apiserver"
    etcd = root / f"etcd-{ETCD_VERSION}" / "etcd"
    for binary, builder in ((apiserver, _build_kube_apiserver), (etcd, _build_etcd)):
        if binary.exists():
            continue
        if not build:
            raise BuildError(
                f"{binary} is not built yet: run `volcano-topology control-plane build` "
                "(`make test` and `make dev` do), or set KUBEBUILDER_ASSETS"
            )
        with _locked(binary.parent):
            if not binary.exists():  # another process may have built it while we waited
                builder(binary, progress or _log_progress)
    return Binaries(apiserver, etcd, KUBERNETES_VERSION, ETCD_VERSION)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "no control-plane binaries: set KUBEBUILDER_ASSETS to a directory with kube-apiserver "
            "and etcd, or install Go so they can be built"
        )
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false", GOTOOLCHAIN="local")
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    match = _GO_VERSION.search(version)
    # Go 1.27 enables the jsonv2 experiment by default, which corrupts kube-apiserver's OpenAPI output.
    if match and (int(match.group(1)), int(match.group(2))) >= (1, 27):
        env["GOEXPERIMENT"] = "nojsonv2"
    return env


def _go(args: list[str], cwd: Path, env: dict[str, str], progress: Progress | None = None, what: str = "") -> str:
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["go", *args], cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        while True:
            try:
                proc.wait(timeout=HEARTBEAT)
                break
            except subprocess.TimeoutExpired:
                if progress is not None:
                    progress(f"  still building {what} (go {args[0]}, {time.monotonic() - started:.0f}s)")
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise BuildError(f"go {' '.join(args)} failed in {cwd}:\n{stderr[-4000:]}")
    log.info("go %s: %.0fs", args[0], time.monotonic() - started)
    return stdout


def staging_replacements(kubernetes_go_mod: str, version: str) -> dict[str, str]:
    """Map each ``k8s.io/<staging repo>`` replaced by a local path to its published version."""
    minor_patch = version.removeprefix("v").split(".", 1)[1]
    published = f"v0.{minor_patch}"
    replacements: dict[str, str] = {}
    for match in re.finditer(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_go_mod, re.MULTILINE):
        replacements[match.group(1)] = published
    if not replacements:
        raise BuildError("found no staging replacements in the k8s.io/kubernetes go.mod")
    return replacements


def _build_module(
    name: str, go_mod: str, package: str, version: str, target: Path, progress: Progress, ldflags: str = ""
) -> None:
    env = _go_env()
    work = Path(tempfile.mkdtemp(prefix=f"build-{name}-", dir=target.parent))
    try:
        (work / "go.mod").write_text(go_mod)
        started = time.monotonic()
        progress(f"building {name} {version} into {target} (minutes on a cold Go cache)")
        # An explicit version: a bare `go get` would upgrade the module past the pin.
        _go(["get", f"{package}@{version}"], work, env, progress, name)
        output = work / name
        _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(output), package], work, env, progress, name)
        os.replace(output, target)
        progress(f"built {name} in {time.monotonic() - started:.0f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_kube_apiserver(target: Path, progress: Progress) -> None:
    env = _go_env()
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], target.parent, env))
    replacements = staging_replacements(Path(info["GoMod"]).read_text(), KUBERNETES_VERSION)
    lines = ["module volcano-topology.local/kube-apiserver", "", "go 1.26", ""]
    lines.append(f"require k8s.io/kubernetes {KUBERNETES_VERSION}")
    lines.append("")
    lines.append("replace (")
    lines.extend(f"\t{module} => {module} {version}" for module, version in sorted(replacements.items()))
    lines.append(")")
    major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
    stamp = "k8s.io/component-base/version"
    ldflags = (
        f"-s -w -X {stamp}.gitVersion={KUBERNETES_VERSION} -X {stamp}.gitMajor={major} "
        f"-X {stamp}.gitMinor={minor} -X {stamp}.gitTreeState=clean"
    )
    _build_module(
        "kube-apiserver",
        "\n".join(lines) + "\n",
        "k8s.io/kubernetes/cmd/kube-apiserver",
        KUBERNETES_VERSION,
        target,
        progress,
        ldflags,
    )


def _build_etcd(target: Path, progress: Progress) -> None:
    go_mod = f"module volcano-topology.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    _build_module("etcd", go_mod, "go.etcd.io/etcd/server/v3", ETCD_VERSION, target, progress, "-s -w")
