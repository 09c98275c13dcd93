"""The image, built and run here: `make image-test` (root, buildah and mmdebstrap; not part of CI).

It builds the base from Debian packages and the repository's Dockerfile with buildah (`make image-local`),
checks what the image promises (numeric non-root user, OCI labels, no compilers, a read-only root
filesystem works), runs `volcano-topology run` inside it as the deployed ServiceAccount against a real
control plane and sees it converge, then builds a vendor image FROM it with the `new-provider` template's
Dockerfile and runs the vendor's provider inside that.

`podman run` does not work in this sandbox; `buildah run --isolation chroot` does, on the host network.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.test_deploy_kustomize import (
    NS,
    account_kubeconfig,
    account_token,
    apply_dry_run_then_for_real,
    hypernodes,
    set_config,
    synced,
)
from tests.unit.test_deploy_manifests import ROOT
from volcano_topology.controlplane.cluster import LocalControlPlane, free_port

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("VOLCANO_TOPOLOGY_IMAGE_TEST"),
        reason="run by `make image-test` (needs root, buildah and mmdebstrap); not in CI",
    ),
    pytest.mark.timeout(1800),  # the first test builds the base and the image (minutes with vfs storage)
]

IMAGE = "localhost/volcano-topology:image-test"
BASE = "localhost/volcano-topology-base:bookworm"  # make image-local builds it
VENDOR_IMAGE = "localhost/volcano-topology-acme-fabric:image-test"
BUILDAH = ["buildah", "--storage-driver", "vfs"]
CA = "/etc/ssl/certs/ca-certificates.crt"


def buildah(*args: str, timeout: float = 600) -> str:
    result = subprocess.run([*BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"buildah {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image() -> str:
    started = time.monotonic()
    make = ["make", "image-local", "IMAGE=localhost/volcano-topology", "TAG=image-test", "IMAGE_PROVIDERS=emulated"]
    result = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    size = buildah("images", "--format", "{{.Size}}", IMAGE).strip()
    print(f"\nimage {IMAGE}: built in {time.monotonic() - started:.0f}s, size {size}")
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = buildah("from", "--pull-never", image).strip()
    yield name
    buildah("rm", name)


@pytest.fixture
def shared() -> Iterator[Path]:
    """Files for the image's user (65532): pytest's own temporary directories are private to root."""
    directory = Path(tempfile.mkdtemp(prefix="vt-image-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def readable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def run_in(container: str, *command: str, user: str = "65532:65532", mounts: tuple[str, ...] = ()) -> list[str]:
    volumes = [arg for mount in mounts for arg in ("-v", mount)]
    return [*BUILDAH, "run", "--isolation", "chroot", "--user", user, *volumes, container, "--", *command]


def test_image_metadata(image: str) -> None:
    config = json.loads(buildah("inspect", "--type", "image", image))
    oci = config["OCIv1"]["config"]
    assert oci["User"] == "65532:65532"
    assert oci["Entrypoint"] == ["volcano-topology"] and oci["Cmd"] == ["run"]
    labels = oci["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "image-test"
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_no_compilers_and_nothing_writable_but_tmp(container: str) -> None:
    script = (
        "for c in gcc cc c++ g++ clang make; do command -v $c && exit 1; done; "
        "touch /opt/volcano-topology/x 2>/dev/null && exit 2; touch /x 2>/dev/null && exit 3; "
        "touch /tmp/ok && python3 -c 'import volcano_topology_emulated' && volcano-topology providers"
    )
    result = subprocess.run(run_in(container, "sh", "-c", script), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "emulated" in result.stdout
    # kopf needs a user name at startup; a uid the cluster picks (runAsUser) has no passwd entry.
    other = run_in(container, "python3", "-c", "import getpass; print(getpass.getuser())", user="12345:12345")
    assert subprocess.run(other, capture_output=True, text=True, timeout=60).stdout.strip() == "volcano-topology"


def test_read_only_root_filesystem(container: str, tmp_path: Path) -> None:
    """The container's root mounted read-only (as readOnlyRootFilesystem does), a writable /tmp, user 65532."""
    root = buildah("mount", container).strip()
    scratch = tmp_path / "tmp"
    scratch.mkdir(mode=0o1777)
    scratch.chmod(0o1777)
    script = (
        f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && mount --bind {scratch} {root}/tmp && "
        f"chroot --userspec=65532:65532 {root} /usr/bin/env -i PATH=/opt/volcano-topology/bin:/usr/bin:/bin "
        "HOME=/tmp PYTHONDONTWRITEBYTECODE=1 sh -c 'touch /opt/x 2>/dev/null && exit 9; "
        "volcano-topology providers && volcano-topology discover emulated --config /tmp/model.yaml -o tree'"
    )
    (scratch / "model.yaml").write_text("modelFile: tiny-8\n")
    (scratch / "model.yaml").chmod(0o644)
    try:
        result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    finally:
        buildah("umount", container)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "leaf-0" in result.stdout


def bundle_of(image: str) -> str:
    name = buildah("from", "--pull-never", image).strip()
    root = Path(buildah("mount", name).strip())
    try:
        return (root / CA.lstrip("/")).read_text()
    finally:
        buildah("umount", name)
        buildah("rm", name)


def test_the_build_ca_is_not_in_the_image(image: str) -> None:
    """The host's bundle (with the TLS proxy's CA) is mounted into builds only: the image keeps Debian's."""
    debian = bundle_of(BASE)
    if Path(CA).read_text() == debian:
        pytest.skip("the host's CA bundle is Debian's own here: nothing to tell apart")
    assert bundle_of(image) == debian


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(tmp_path_factory.mktemp("deploy-image"), build=False) as control_plane:
        apply_dry_run_then_for_real(control_plane, "deploy/")
        deadline = time.monotonic() + 30
        while control_plane.request("GET", "/apis/topology.volcano.sh/v1alpha1/hypernodes")[0] != 200:
            assert time.monotonic() < deadline, "HyperNodes not servable"
            time.sleep(0.2)
        yield control_plane


def test_operator_in_the_image_converges_as_the_service_account(
    plane: LocalControlPlane, container: str, shared: Path, tmp_path: Path
) -> None:
    set_config(plane, NS, "volcano-topology", {
        "networkTopologyDiscovery": [{"source": "emulated", "interval": "1s", "config": {"modelFile": "tiny-8"}}],
        "operator": {"leaderElection": {"enabled": True}},
    })  # fmt: skip
    assert plane.pki is not None
    # The ServiceAccount's kubeconfig, with the cluster CA at the path where the container sees it.
    kubeconfig = yaml.safe_load(account_kubeconfig(plane, account_token(plane), tmp_path / "sa.kubeconfig").read_text())
    kubeconfig["clusters"][0]["cluster"]["certificate-authority"] = "/vt/ca.crt"
    readable(shared / "ca.crt", plane.pki.ca_cert.read_text())
    readable(shared / "kubeconfig", yaml.safe_dump(kubeconfig))
    port = free_port()
    # As the Deployment runs it: `run` with POD_NAMESPACE (the ConfigMap and Lease live there) and JSON logs.
    command = run_in(
        container, "env", f"POD_NAMESPACE={NS}", "volcano-topology", "run", "--log-json",
        "--kubeconfig", "/vt/kubeconfig", "--health-port", str(port), mounts=(f"{shared}:/vt:ro",),
    )  # fmt: skip
    log = tmp_path / "operator.log"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (len(found := hypernodes(plane)) == 3 and all(synced(o) for o in found.values())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        print(f"\noperator in the image converged in {time.monotonic() - started:.1f}s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert json.loads(response.read())["ready"] is True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, "JSON logs"


def test_vendor_image_from_the_template(image: str, tmp_path: Path, shared: Path) -> None:
    """The vendor recipe: FROM the operator image, pip install the provider package (the template's Dockerfile)."""
    package = tmp_path / "acme-fabric"
    cli = [sys.executable, "-m", "volcano_topology.cli", "new-provider", "acme-fabric", "--dir", str(package)]
    subprocess.run(cli, check=True, capture_output=True, timeout=60)
    started = time.monotonic()
    buildah("bud", "--isolation", "chroot", "-v", f"{CA}:{CA}:ro", "--build-arg", f"OPERATOR_IMAGE={image}",
            "-t", VENDOR_IMAGE, str(package), timeout=900)  # fmt: skip
    print(f"\nvendor image built in {time.monotonic() - started:.0f}s")
    name = buildah("from", "--pull-never", VENDOR_IMAGE).strip()
    try:
        config = json.loads(buildah("inspect", "--type", "image", VENDOR_IMAGE))["OCIv1"]["config"]
        assert config["User"].split(":")[0] == "65532"
        readable(shared / "config.yaml", (package / "example-config.yaml").read_text())
        discover = run_in(name, "volcano-topology", "discover", "acme-fabric", "--config", "/vt/config.yaml",
                          "-o", "tree", mounts=(f"{shared}:/vt:ro",))  # fmt: skip
        result = subprocess.run(discover, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        providers = subprocess.run(run_in(name, "volcano-topology", "providers"), capture_output=True, text=True)
        assert "acme-fabric" in providers.stdout and "emulated" in providers.stdout
    finally:
        buildah("rm", name)
