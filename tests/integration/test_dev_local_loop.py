"""A vendor's local loop: `volcano-topology dev --provider-path DIR --config FILE`, exactly as the guide says.

dev runs the vendor's provider (here the test "static" provider, installed as `pip install --target` would)
on its own control plane, prints the tree, prints it again after the configuration file is edited, and
stops everything on Ctrl-C. A configuration that cannot run is refused before anything starts.
"""

from __future__ import annotations

import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from kubernetes import client

from tests.integration.operator_harness import provider_dir, static_leaf
from tests.integration.test_dev_mode import listening_on
from volcano_topology import kube
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import free_port

DEV = [sys.executable, "-m", "volcano_topology.cli", "dev"]
ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "write-a-provider.md"


def guide_block(name: str) -> str:
    """The fenced block after ``<!-- dev: NAME -->`` in the guide's "Run your provider locally"."""
    match = re.search(rf"<!-- dev: {re.escape(name)} -->\n```[a-z]*\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert match, f"block {name!r} is missing from {GUIDE.name}"
    return match.group(1)


def tree_lines(block: str) -> list[str]:
    """A printed tree from the guide: its header up to the time (which varies), then every line."""
    header, *lines = block.strip().splitlines()
    return [header.split(";")[0] + "; ", *lines]


def spine(name: str, *leaves: str) -> dict[str, Any]:
    members = [{"type": "HyperNode", "selector": {"exactMatch": {"name": leaf}}} for leaf in leaves]
    return {"metadata": {"name": name}, "spec": {"tier": 2, "tierName": "spine", "members": members}}


def static_config(path: Path, hypernodes: list[dict[str, Any]]) -> Path:
    """The operator's configuration shape, as a vendor writes it for dev: one entry, no operator block."""
    entry = {"source": "static", "enabled": True, "config": {"hypernodes": hypernodes}}
    path.write_text(yaml.safe_dump({"networkTopologyDiscovery": [entry]}, sort_keys=False))
    return path


class Output:
    """Lines of a process's stdout as they come, read on a thread so that waiting has a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, *wanted: str, after: int = 0, within: float = 60.0) -> int:
        """Wait until the output after line ``after`` holds every ``wanted`` text; the number of lines read."""
        deadline = time.monotonic() + within
        while not all(w in "".join(self.lines[after:]) for w in wanted):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not printed within {within:.0f}s: {wanted}\n{self.text()}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"dev exited before printing {wanted}:\n{self.text()}")
            self.lines.append(line)
        return len(self.lines)


def synced_status(api: client.ApiClient, name: str, within: float = 20.0) -> dict[str, Any]:
    """The status of HyperNode ``name`` once the operator has written its Synced condition."""
    deadline = time.monotonic() + within
    while True:
        found: Any = client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        status: dict[str, Any] = found.get("status") or {}
        if any(c.get("type") == "Synced" for c in status.get("conditions") or []):
            return status
        assert time.monotonic() < deadline, f"no Synced condition on {name}: {found}"
        time.sleep(0.2)


def test_dev_runs_a_vendor_provider_and_reloads_its_config(tmp_path: Path) -> None:
    providers = provider_dir(tmp_path / "providers")  # what `pip install --no-deps --target DIR pkg` leaves
    config = static_config(tmp_path / "topology.yaml", [static_leaf("leaf-a", "n1", "n2")])
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("n1: {rack: a}\nn2: {rack: a}\nn3: {}\n")  # as `discover --nodes` takes them
    workdir = tmp_path / "dev"
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [*DEV, "--workdir", str(workdir), "--provider-path", str(providers), "--config", str(config),
         "--nodes", str(nodes), "--health-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out = Output(proc.stdout)  # type: ignore[arg-type]
        seen = out.wait_for("--- HyperNodes (1; first tree after", "leaf-a  (tier 1; 2 nodes: n1, n2)")
        first = time.monotonic() - started
        assert f"providers from {config}: static" in out.text()
        assert f"configuration: {config} (edit it" in out.text(), "dev runs on the user's own file"
        assert listening_on(port) == {"0100007F"}, "health and metrics on 127.0.0.1 only"
        api = kube.api_client(workdir / "admin.kubeconfig")
        listed: Any = client.CoreV1Api(api).list_node()
        assert {n.metadata.name: n.metadata.labels for n in listed.items} == {
            "n1": {"rack": "a"},
            "n2": {"rack": "a"},
            "n3": None,
        }, "--nodes created the Nodes the provider sees"
        assert f"3 Nodes from {nodes}" in out.text()
        status = synced_status(api, "leaf-a")
        assert "nodeCount" not in status, "the file's operator block (default: nodeCount off) applies"
        leases: Any = client.CoordinationV1Api(api).list_lease_for_all_namespaces()
        names = [lease.metadata.name for lease in leases.items]
        assert "volcano-topology" not in names, "leader election stays off although the file (by default) enables it"

        edited = time.monotonic()
        static_config(config, [static_leaf("leaf-a", "n1", "n2"), static_leaf("leaf-b", "n3"),
                               spine("spine-0", "leaf-a", "leaf-b")])  # fmt: skip
        out.wait_for(
            "--- HyperNodes (3; ",
            "spine-0  (tier 2 spine)",
            "├── leaf-a  (tier 1; 2 nodes: n1, n2)",
            "└── leaf-b  (tier 1; 1 node: n3)",
            after=seen,
        )
        reloaded = time.monotonic() - edited

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, out.text() + err
    out.wait_for("stopping kube-apiserver and etcd", after=seen)
    assert "provider static: started" in err
    assert "configuration error" not in err, err
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout.split()
    assert left == [], "every process dev started is gone"
    print(f"dev --config: first tree after {first:.1f}s, reloaded tree {reloaded:.1f}s after the edit")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "networkTopologyDiscovery:\n  - source: static\n    config: {hypernodes: [\n",
            ["topology.yaml: not valid YAML", "at line 4, column 1"],
            id="invalid-yaml",
        ),
        pytest.param(
            "networkTopologyDiscovery:\n  - source: racks\n",
            ["topology.yaml: provider 'racks': is not installed", "providers found (installed and in ", "static"],
            id="unknown-provider",
        ),
        pytest.param(
            "networkTopologyDiscovery:\n  - source: static\n    config: {hypernode: []}\n",
            ["topology.yaml: provider 'static': invalid config: hypernode: Extra inputs are not permitted"],
            id="bad-provider-config",
        ),
        pytest.param(
            "networkTopologyDiscovery:\n  - source: static\n    intervl: 5s\n",
            ["topology.yaml: networkTopologyDiscovery[0].intervl: Extra inputs are not permitted"],
            id="bad-entry",
        ),
        pytest.param(
            "networkTopologyDiscovery: []\n",
            ["topology.yaml: no enabled entry in networkTopologyDiscovery"],
            id="nothing-enabled",
        ),
    ],
)
def test_dev_refuses_a_config_that_cannot_run_before_starting_anything(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    providers = provider_dir(tmp_path / "providers")
    config = tmp_path / "topology.yaml"
    config.write_text(text)
    result = subprocess.run(
        [*DEV, "--workdir", str(tmp_path / "dev"), "--provider-path", str(providers), "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    first = result.stderr.splitlines()[0] if result.stderr else ""
    assert first.startswith(f"error: {config}: "), result.stderr
    for part in expected:
        assert part in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "starting kube-apiserver" not in result.stdout, "nothing is started for a configuration that cannot run"
    assert not (tmp_path / "dev").exists()


def test_dev_refuses_nodes_it_cannot_read(tmp_path: Path) -> None:
    providers = provider_dir(tmp_path / "providers")
    config = static_config(tmp_path / "topology.yaml", [])
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("just a sentence\n")
    result = subprocess.run(
        [*DEV, "--provider-path", str(providers), "--config", str(config), "--nodes", str(nodes)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"error: {nodes}: --nodes: expected a list of names, a mapping of name to labels" in result.stderr
    assert "starting kube-apiserver" not in result.stdout


def test_dev_without_config_refuses_a_provider_path(tmp_path: Path) -> None:
    result = subprocess.run([*DEV, "--provider-path", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--provider-path needs --config FILE" in result.stderr


def test_the_guides_local_loop_runs_as_written(tmp_path: Path) -> None:
    """The guide's commands, in a fresh directory, with the guide's file and the guide's edit."""
    shutil.copytree(ROOT / "providers" / "example", tmp_path / "providers" / "example")
    config = tmp_path / "topology.yaml"
    config.write_text(guide_block("topology.yaml"))
    install, dev = [shlex.split(line) for line in guide_block("commands").strip().splitlines()]
    assert install[:2] == ["pip", "install"] and dev[:2] == ["volcano-topology", "dev"]
    # This environment's pip, offline: the build backend comes from the environment, not the index.
    subprocess.run([sys.executable, "-m", *install, "--quiet", "--no-build-isolation"], cwd=tmp_path, check=True)
    workdir = tmp_path / "dev"
    proc = subprocess.Popen(
        [*DEV, *dev[2:], "--workdir", str(workdir), "--health-port", str(free_port())],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out = Output(proc.stdout)  # type: ignore[arg-type]
        seen = out.wait_for(*tree_lines(guide_block("first tree")))
        config.write_text(guide_block("topology.yaml, edited"))
        out.wait_for(*tree_lines(guide_block("edited tree")), after=seen)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, out.text() + err
    assert "provider example: configuration changed, restarting" in err
    assert "CRD installed; providers from " in out.text() and ": example\n" in out.text()
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout.split()
    assert left == []


def test_the_guides_walk_from_the_template_to_dev(tmp_path: Path) -> None:
    """new-provider, pip install --target, dev --source with the template's config block, an edit, Ctrl-C."""
    new_provider, install, dev = [shlex.split(line) for line in guide_block("template commands").strip().splitlines()]
    assert new_provider[:2] == ["volcano-topology", "new-provider"] and install[:2] == ["pip", "install"]
    assert dev[:2] == ["volcano-topology", "dev"] and "--source" in dev
    subprocess.run([*DEV[:-1], *new_provider[1:]], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", *install, "--quiet", "--no-build-isolation"], cwd=tmp_path, check=True)
    block = tmp_path / dev[dev.index("--config") + 1]
    workdir = tmp_path / "dev"
    proc = subprocess.Popen(
        [*DEV, *dev[2:], "--workdir", str(workdir), "--health-port", str(free_port())],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out = Output(proc.stdout)  # type: ignore[arg-type]
        seen = out.wait_for(*tree_lines(guide_block("template first tree")))
        original = block.read_text()
        block.write_text(original + "  - {name: [\n")  # a broken edit first: reported, the provider keeps running
        time.sleep(2.5)
        block.write_text(original.rstrip("\n") + "\n" + guide_block("template edit"))
        out.wait_for(
            f"{dev[dev.index('--config') + 1]} changed: the operator reloads it",
            *tree_lines(guide_block("template edited tree")),
            after=seen,
        )
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 0, out.text() + err
    assert "provider acme-fabric: configuration changed, restarting" in err
    assert "configuration error" not in err, err
    config = dev[dev.index("--config") + 1]
    assert f"error: {config}: not valid YAML: " in err and "(the provider keeps its last good config)" in err, err
    assert err.count("provider acme-fabric: configuration changed, restarting") == 1, "the broken edit changed nothing"
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout.split()
    assert left == []


def test_dev_source_refuses_a_block_that_cannot_run(tmp_path: Path) -> None:
    providers = provider_dir(tmp_path / "providers")
    block = tmp_path / "static.yaml"
    block.write_text("hypernode: []\n")
    result = subprocess.run(
        [*DEV, "--provider-path", str(providers), "--source", "static", "--config", str(block)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"error: {block}: provider 'static': invalid config: hypernode: Extra inputs" in result.stderr
    block.write_text("networkTopologyDiscovery: []\n")
    result = subprocess.run(
        [*DEV, "--provider-path", str(providers), "--source", "static", "--config", str(block)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "this is a whole configuration (networkTopologyDiscovery): give it with --config alone" in result.stderr
    assert "starting kube-apiserver" not in result.stdout
