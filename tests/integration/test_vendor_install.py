"""docs/write-a-provider.md, "Add a vendor package to the operator", run as written: the package (which depends
on volcano-topology) installs with --no-deps --target, `providers --provider-path` lists it as compatible, and the
operator started with `run --provider-path` loads it and writes its HyperNodes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.faultproxy import FaultProxy
from tests.integration.conftest import cluster_hypernodes, members
from tests.integration.operator_harness import OperatorProcess, write_config
from volcano_topology.controlplane.cluster import LocalControlPlane

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "write-a-provider.md"
BIN = Path(sys.executable).parent


def documented_commands() -> list[list[str]]:
    match = re.search(r"<!-- vendor-install -->\n```sh\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert match, "the vendor-install commands are missing from the guide"
    return [shlex.split(line, comments=True) for line in match.group(1).splitlines() if line.strip()]


def as_here(argv: list[str], target: Path) -> list[str]:
    """The documented command with this test's directory for /providers and the venv's executables."""
    argv = [str(target) if arg == "/providers" else arg for arg in argv]
    if argv[0] == "pip":
        return [sys.executable, "-m", "pip", *argv[1:]]
    return [str(BIN / argv[0]), *argv[1:]]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example provider as a wheel in a local package index (a directory pip can find it in by name)."""
    index = tmp_path_factory.mktemp("index")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(index), str(ROOT / "providers" / "example")],
        check=True, timeout=120,
    )  # fmt: skip
    return index


def test_the_documented_commands_install_list_and_run_it(
    wheels: Path,
    tmp_path: Path,
    control_plane: LocalControlPlane,
    hypernode_api: client.ApiClient,
    faults: FaultProxy,
) -> None:
    install, listing, run = documented_commands()
    assert install[:5] == ["pip", "install", "--no-deps", "--target", "/providers"]
    assert listing == ["volcano-topology", "providers", "--provider-path", "/providers"]
    assert run[:4] == ["volcano-topology", "run", "--provider-path", "/providers"]
    target = tmp_path / "providers"

    subprocess.run([*as_here(install, target), "--quiet", "--no-index", "--find-links", str(wheels)],
                   check=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert (target / "volcano_topology_example" / "provider.py").exists()
    assert not (target / "volcano_topology").exists(), "--no-deps: the operator's own package is not copied in"

    listed = subprocess.run(as_here(listing, target), capture_output=True, text=True, check=True, cwd=tmp_path)
    assert re.search(r"^example\s+volcano-topology-provider-example\s+0\.1\.0\s+compatible$", listed.stdout, re.M), (
        listed.stdout
    )
    unlisted = subprocess.run(as_here(listing[:2], target), capture_output=True, text=True, check=True, cwd=tmp_path)
    assert not re.search(r"^example\s", unlisted.stdout, re.M), "only --provider-path makes it visible"

    config = write_config(
        tmp_path / "topology.yaml",
        [{"source": "example", "config": {"leaves": 2, "prefix": "vendor", "interval": 3600}}],
    )
    operator = OperatorProcess(control_plane.kubeconfig, tmp_path, config=config, provider_path=target).start()
    try:
        operator.wait(lambda: len(cluster_hypernodes(hypernode_api, "example")) == 3, what="the example's 3 HyperNodes")
    finally:
        assert operator.stop() == 0, operator.tail()
    objects = cluster_hypernodes(hypernode_api, "example")
    assert members(objects["vendor-spine"]) == ["vendor-leaf-0", "vendor-leaf-1"]
