"""`volcano-topology new-provider NAME`: the package it renders installs as a vendor package, passes its own
tests (offline and against a real API server, with the test kit) and `mypy --strict`, and lints clean."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from volcano_topology.cli import EXIT_OK, EXIT_USAGE, main

BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = tmp_path_factory.mktemp("template") / "acme-fabric"
    assert main(["new-provider", "acme-fabric", "--dir", str(package)]) == EXIT_OK
    return package


def test_renders_a_package_with_entry_point_settings_tests_readme_and_dockerfile(rendered: Path) -> None:
    files = sorted(str(p.relative_to(rendered)) for p in rendered.rglob("*") if p.is_file())
    assert files == [
        ".dockerignore", ".gitignore", "Dockerfile", "README.md",
        "acme_fabric_topology_provider/__init__.py", "acme_fabric_topology_provider/provider.py",
        "acme_fabric_topology_provider/py.typed", "example-config.yaml", "pyproject.toml", "tests/test_provider.py",
    ]  # fmt: skip
    project = tomllib.loads((rendered / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert any(d.startswith("volcano-topology>=") for d in project["project"]["dependencies"])
    assert project["project"]["entry-points"]["volcano_topology.providers"] == {
        "acme-fabric": "acme_fabric_topology_provider.provider:AcmeFabricProvider"
    }
    provider = (rendered / "acme_fabric_topology_provider" / "provider.py").read_text()
    assert "class AcmeFabricSettings(BaseModel):" in provider
    assert "class AcmeFabricProvider(ScanningProvider):" in provider
    assert "from volcano_topology.testing import" in (rendered / "tests" / "test_provider.py").read_text()
    readme = (rendered / "README.md").read_text()
    assert "source: acme-fabric" in readme and "| `racks` |" in readme
    assert "pip install --no-deps --target /providers volcano-topology-provider-acme-fabric" in readme
    dockerfile = (rendered / "Dockerfile").read_text().splitlines()
    assert "FROM ${OPERATOR_IMAGE}" in dockerfile
    assert any(line.startswith("ARG OPERATOR_IMAGE=volcano-topology:") for line in dockerfile)
    assert "RUN pip install --no-cache-dir /src/volcano-topology-provider-acme-fabric && rm -rf /src" in dockerfile


def test_installed_as_a_vendor_package_it_passes_its_own_tests(rendered: Path, tmp_path: Path) -> None:
    target = tmp_path / "providers"
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(rendered)], cwd=tmp_path)  # fmt: skip
    assert (target / "acme_fabric_topology_provider" / "provider.py").exists()
    # From outside the source tree, so the tests import the installed copy (its entry point included).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(rendered / "tests")],
               cwd=elsewhere, PYTHONPATH=str(target))  # fmt: skip
    assert "4 passed" in done.stdout, done.stdout


def test_it_passes_mypy_strict_and_ruff(rendered: Path, tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy-cache")], cwd=rendered)
    assert "Success: no issues found in 3 source files" in done.stdout
    run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=rendered)
    run([str(BIN / "ruff"), "format", "--check", "--no-cache", "."], cwd=rendered)


def test_refuses_a_bad_name_and_a_used_directory(
    rendered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new-provider", "Acme_Fabric", "--dir", str(tmp_path / "x")]) == EXIT_USAGE
    assert "not a usable provider name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["new-provider", "acme-fabric", "--dir", str(rendered)]) == EXIT_USAGE
    assert "is not an empty directory" in capsys.readouterr().err


def test_the_guide_shows_the_dockerfile_the_template_renders(rendered: Path) -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "write-a-provider.md").read_text()
    match = re.search(r"```dockerfile\n(.*?)```", guide, re.DOTALL)
    assert match, "the image recipe is missing from the guide"
    dockerfile = [line for line in (rendered / "Dockerfile").read_text().splitlines() if line and line[0] != "#"]
    assert match.group(1).splitlines() == dockerfile
