"""A vendor package written from docs/reference.md passes `mypy --strict` against the installed package.

No cluster: this runs the project's mypy (``python -m mypy`` of the test's interpreter) in a
directory of its own, so the repository's mypy configuration does not apply, as for a vendor.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def example() -> str:
    match = re.search(r"<!-- example: vendor -->\n```python\n(.*?)```", REFERENCE.read_text(), re.DOTALL)
    assert match, "the vendor example is missing from docs/reference.md"
    return match.group(1)


def mypy_strict(package: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary", "-p", package.name]
    return subprocess.run(command, cwd=package.parent, capture_output=True, text=True, timeout=300)


@pytest.fixture
def vendor_package(tmp_path: Path) -> Path:
    package = tmp_path / "acme_fabric"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "py.typed").write_text("")
    (package / "provider.py").write_text(example())
    return package


def test_the_reference_example_passes_mypy_strict(vendor_package: Path) -> None:
    result = mypy_strict(vendor_package)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_still_catches_a_vendor_mistake(vendor_package: Path) -> None:
    """The package's types are really checked: a wrong argument type and an unknown top-level name fail."""
    (vendor_package / "broken.py").write_text(
        "from volcano_topology import Event, TreeBuilder, NoSuchName\n\n"
        "def leaves() -> Event:\n"
        "    return Event.delete(TreeBuilder())\n"
    )
    result = mypy_strict(vendor_package)
    assert result.returncode == 1
    assert 'Module "volcano_topology" has no attribute "NoSuchName"' in result.stdout
    assert 'Argument 1 to "delete" of "Event" has incompatible type "TreeBuilder"; expected "str"' in result.stdout


def test_the_example_runs(vendor_package: Path) -> None:
    """What the example declares builds: the rails provider's tree is strict and complete."""
    namespace: dict[str, object] = {"__name__": "acme_fabric.provider"}
    exec(compile(example(), "reference.md:vendor", "exec"), namespace)
    provider = namespace["RailsProvider"](namespace["FabricSettings"]())  # type: ignore[operator]
    built = provider.scan().build()
    assert sorted((h.spec.tier, h.name.split("-")[1]) for h in built) == [(1, "leaf"), (1, "leaf"), (2, "spine")]
