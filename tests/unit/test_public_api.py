"""The names a vendor uses: importable from the top-level package, documented, typed, and cheap to import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import volcano_topology

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
# What a vendor needs at the least (issue 12); __all__ may hold more.
VENDOR_NAMES = [
    "Provider", "ProviderContext", "Event", "EventType", "Reply", "ApplyError", "InvalidHyperNode",
    "TopologyViolation", "OwnershipConflict", "DeletionRefused", "RequestRejected", "RetriesExhausted",
    "MalformedEvent", "HyperNode", "HyperNodeSpec", "Member", "ObjectMeta", "TreeBuilder", "TreeError",
    "ScanningProvider", "simple_provider", "LifecycleProvider", "CONTRACT_VERSION",
]  # fmt: skip


def test_the_vendor_names_are_public() -> None:
    assert set(VENDOR_NAMES) <= set(volcano_topology.__all__)


@pytest.mark.parametrize("name", volcano_topology.__all__)
def test_every_public_name_is_importable_from_the_package_and_is_the_real_object(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from volcano_topology import {name}", namespace)
    value = namespace[name]
    module = sys.modules[volcano_topology._WHERE[name]]
    assert value is getattr(module, name)


@pytest.mark.parametrize("name", volcano_topology.__all__)
def test_every_public_name_is_documented_in_the_reference(name: str) -> None:
    found = re.search(rf"(`|^## ){re.escape(name)}\b", REFERENCE.read_text(), re.MULTILINE)
    assert found, f"{name} is neither a heading nor `code` in docs/reference.md"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from volcano_topology import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(volcano_topology.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        volcano_topology.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_the_package_is_marked_typed() -> None:
    assert (ROOT / "volcano_topology" / "py.typed").is_file()


def test_importing_the_package_imports_no_submodule_and_no_dependency() -> None:
    code = (
        "import sys, volcano_topology\n"
        "print(sorted(m for m in sys.modules if m.startswith(('volcano_topology.', 'pydantic', 'kubernetes', 'kopf'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["Provider", "TreeBuilder", "LifecycleProvider", "ScanningProvider", "HyperNode"])
def test_each_name_imports_alone_in_a_fresh_interpreter(name: str) -> None:
    """No import cycle, whichever name is asked for first."""
    subprocess.run([sys.executable, "-c", f"from volcano_topology import {name}"], check=True)
