"""Fixtures of the ufm provider's tests: certificates made with openssl, a loopback UFM."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ufm_testlib

from ufm_testlib import FakeUFM, to_ufm, two_tier

from volcano_topology.controlplane.pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a serving certificate for 127.0.0.1 signed by it."""
    return make_pki(tmp_path_factory.mktemp("ufm-pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA, which did not sign the server's certificate."""
    return make_pki(tmp_path_factory.mktemp("ufm-other-pki"))


@pytest.fixture
def ufm(pki: Pki) -> Iterator[FakeUFM]:
    """A loopback UFM over HTTPS (certificate from ``pki``) serving a small two-tier fabric."""
    with FakeUFM(to_ufm(two_tier()), cert=(pki.serving_cert, pki.serving_key)) as server:
        yield server


@pytest.fixture
def plain_ufm() -> Iterator[FakeUFM]:
    """A loopback UFM over plain HTTP serving a small two-tier fabric."""
    with FakeUFM(to_ufm(two_tier())) as server:
        yield server
