"""The pytest plugin (entry point ``pytest11``), active wherever volcano-topology is installed.

Fixtures:

- ``vt_control_plane`` (session): a real kube-apiserver + etcd on loopback, TLS, tokens, RBAC,
  with the HyperNode CRD installed. ``.kubeconfig`` is the admin's kubeconfig path;
  ``.mint_token(namespace, account)`` gives a ServiceAccount identity. It never builds the
  binaries (a test timeout would cut the build short): when they are missing the tests that
  use it fail with the command to run, ``volcano-topology control-plane build``. When any
  test failed, the control plane's logs are copied to ``test-artifacts/`` under the rootdir.
- ``vt_kubeconfig`` (session): ``str(vt_control_plane.kubeconfig)``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from volcano_topology.controlplane.cluster import LocalControlPlane


@pytest.fixture(scope="session")
def vt_control_plane(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalControlPlane]:
    """A session-wide local control plane with the HyperNode CRD installed."""
    from volcano_topology.testing.kit import ControlPlaneUnavailable, start_control_plane

    workdir = tmp_path_factory.mktemp("vt-control-plane")
    try:
        plane = start_control_plane(workdir)
    except ControlPlaneUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()
        if request.session.testsfailed:
            keep = request.config.rootpath / "test-artifacts" / f"control-plane-{time.strftime('%Y%m%d-%H%M%S')}"
            keep.mkdir(parents=True, exist_ok=True)
            for log in plane.log_files:
                if log.exists():
                    shutil.copy(log, keep / log.name)
            print(f"\ncontrol-plane logs kept in {keep}")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def vt_kubeconfig(vt_control_plane: LocalControlPlane) -> str:
    """The admin kubeconfig of ``vt_control_plane``."""
    return str(vt_control_plane.kubeconfig)
