"""Finding control-plane binaries: KUBEBUILDER_ASSETS first, and the generated Go module replacements."""

from __future__ import annotations

from pathlib import Path

import pytest

from volcano_topology.controlplane import build
from volcano_topology.controlplane.cluster import LocalControlPlane


def test_kubebuilder_assets_are_used_without_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("kube-apiserver", "etcd"):
        binary = tmp_path / name
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no Go: a build attempt would fail
    found = build.ensure_binaries()
    assert (found.kube_apiserver, found.etcd) == (tmp_path / "kube-apiserver", tmp_path / "etcd")


def test_kubebuilder_assets_missing_a_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etcd").write_text("")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(build.BuildError, match=r"kube-apiserver is missing or not executable"):
        build.ensure_binaries()


def test_no_binaries_and_no_go_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("VOLCANO_TOPOLOGY_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "")
    with pytest.raises(build.BuildError, match=r"set KUBEBUILDER_ASSETS .* or install Go"):
        build.ensure_binaries()


def test_staging_replacements_map_local_paths_to_published_versions() -> None:
    go_mod = """module k8s.io/kubernetes
require (
\tk8s.io/api v0.0.0
)
replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/example/other => github.com/example/other v1.0.0
)
"""
    assert build.staging_replacements(go_mod, "v1.36.3") == {"k8s.io/api": "v0.36.3", "k8s.io/client-go": "v0.36.3"}


def test_a_go_mod_without_staging_replacements_is_refused() -> None:
    with pytest.raises(build.BuildError, match="no staging replacements"):
        build.staging_replacements("module x\n", "v1.36.3")


def test_a_fixture_that_may_not_build_names_the_build_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test harness never builds (a test timeout would cut a cold build short); it says what to run."""
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("VOLCANO_TOPOLOGY_CACHE", str(tmp_path / "cache"))
    plane = LocalControlPlane(tmp_path / "plane", build=False)
    with pytest.raises(build.BuildError, match=r"volcano-topology control-plane build"):
        plane.start()
    assert not list((tmp_path / "cache").rglob("build-*"))  # no build was even started


FAKE_GO = """#!/bin/sh
# Stands in for the Go toolchain: slow enough to need a heartbeat, writes what `go build -o` names.
case "$1" in
  env) echo go1.26.8 ;;
  mod) printf '{"GoMod": "%s"}' "$FAKE_GO_MOD" ;;
  get) sleep 0.3 ;;
  build)
    sleep 0.5
    while [ $# -gt 0 ]; do [ "$1" = "-o" ] && { echo binary > "$2"; chmod +x "$2"; }; shift; done ;;
esac
"""


def test_a_build_reports_progress_while_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "go").write_text(FAKE_GO)
    (tools / "go").chmod(0o755)
    go_mod = tmp_path / "kubernetes.go.mod"
    go_mod.write_text("replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n)\n")
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("VOLCANO_TOPOLOGY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_GO_MOD", str(go_mod))
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setattr(build, "HEARTBEAT", 0.1)
    lines: list[str] = []
    found = build.ensure_binaries(progress=lines.append)
    assert found.kube_apiserver.exists() and found.etcd.exists()
    assert any(line.startswith("building kube-apiserver") for line in lines)
    assert any("still building kube-apiserver (go build" in line for line in lines)
    assert any(line.startswith("built etcd in") for line in lines)
    lines.clear()
    build.ensure_binaries(progress=lines.append)  # cached: nothing built, nothing said
    assert lines == []
