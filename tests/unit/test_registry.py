"""The registry loads only named providers; each one that cannot run gets one clear error."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from volcano_topology import registry

ENTRY_POINTS = """
[volcano_topology.providers]
good = vendor_good:Good
broken = vendor_broken:Thing
wrongtype = vendor_wrongtype:thing
future = vendor_future:Future
"""

MODULES = {
    "vendor_good": """
        from volcano_topology.provider import Provider
        class Good(Provider):
            async def start(self, events, replies, ctx):
                return None
    """,
    "vendor_broken": "import vendor_sdk_that_is_not_installed\n",
    "vendor_wrongtype": "thing = 42\n",
    "vendor_future": """
        from volcano_topology.provider import Provider
        class Future(Provider):
            contract_version = "2.0"
            async def start(self, events, replies, ctx):
                return None
    """,
}


@pytest.fixture
def provider_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory laid out as `pip install --target DIR` leaves it, holding four vendor providers."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name, source in MODULES.items():
        monkeypatch.delitem(sys.modules, name, raising=False)
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    dist = tmp_path / "vendor_providers-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vendor-providers\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return tmp_path


def test_loads_only_named_providers_and_reports_each_failure(provider_dir: Path) -> None:
    loaded, errors = registry.load(["good", "broken", "wrongtype", "future", "missing"], [provider_dir])
    assert list(loaded) == ["good"]
    assert loaded["good"].target == "vendor_good:Good"
    reasons = {e.name: e.reason for e in errors}
    assert list(reasons) == ["broken", "wrongtype", "future", "missing"]
    assert "cannot be imported from vendor_broken:Thing: ModuleNotFoundError" in reasons["broken"]
    assert "is not a volcano_topology.provider.Provider subclass (got 42)" in reasons["wrongtype"]
    assert "built for provider contract 2.0, this operator implements 1.1" in reasons["future"]
    assert "is not installed (no entry point 'missing'" in reasons["missing"]
    assert str(errors[0]).startswith("provider 'broken': ")


def test_unnamed_providers_are_not_imported(provider_dir: Path) -> None:
    loaded, errors = registry.load(["good"], [provider_dir])
    assert (list(loaded), errors) == (["good"], [])
    assert "vendor_broken" not in sys.modules


def test_installed_lists_versions_and_compatibility(provider_dir: Path) -> None:
    found = {p.name: p for p in registry.installed([provider_dir])}
    assert {"good", "broken", "wrongtype", "future"} <= set(found)
    assert (found["good"].distribution, found["good"].version, found["good"].problem) == (
        "vendor-providers",
        "1.2.3",
        None,
    )
    assert found["future"].problem is not None
    assert found["broken"].problem is not None
    assert found["broken"].problem.startswith("cannot be imported")
