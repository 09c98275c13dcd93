"""Run the operator as its own process against the real API server, and look at it from outside."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from volcano_topology.controlplane.cluster import free_port

PROVIDERS = Path(__file__).resolve().parents[1] / "providers"


def provider_dir(target: Path) -> Path:
    """The test providers laid out as `pip install --target` would: a module plus its dist-info."""
    target.mkdir(parents=True, exist_ok=True)
    for module in ("static_provider.py", "csv_provider.py", "nodes_provider.py"):
        shutil.copy(PROVIDERS / module, target / module)
    dist = target / "volcano_topology_test_providers-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: volcano-topology-test-providers\nVersion: 0.1\n")
    entry_points = [
        "[volcano_topology.providers]",
        *(f"{n} = static_provider:StaticProvider" for n in ("static", "static2")),
        "csv = csv_provider:CsvProvider",
        "nodes = nodes_provider:NodesProvider",
    ]
    (dist / "entry_points.txt").write_text("\n".join(entry_points) + "\n")
    return target


def static_leaf(name: str, *nodes: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": n}}} for n in nodes]},
    }


@dataclass
class OperatorProcess:
    kubeconfig: Path
    workdir: Path
    config: Path | None = None
    config_map: str | None = None
    provider_path: Path | None = None
    identity: str = "operator-a"
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # added to (or replacing) the test's environment
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() when the process was started

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.identity}.log"

    def start(self) -> OperatorProcess:
        args = [sys.executable, "-m", "volcano_topology.cli", "-v", "run", "--kubeconfig", str(self.kubeconfig)]
        args += ["--health-port", str(self.port), "--poll", "0.5", "--identity", self.identity, "--drain", "10"]
        args += ["--config", str(self.config)] if self.config else ["--config-map", str(self.config_map)]
        if self.provider_path:
            args += ["--provider-path", str(self.provider_path)]
        env = {**{k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "POD_NAMESPACE")}, **self.env}
        with self.log.open("ab") as log:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen([*args, *self.extra], stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float:
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
        return total

    def ready(self) -> dict[str, Any]:
        status, body = self.get("/readyz")
        return json.loads(body) if status in (200, 503) and body else {}

    def wait(self, condition: Any, within: float = 60.0, what: str = "condition") -> float:
        started = time.monotonic()
        while time.monotonic() - started < within:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"operator exited ({self.process.returncode}):\n{self.tail()}")
            if condition():
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{what} not reached within {within:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code


def write_config(path: Path, entries: list[dict[str, Any]], **operator: Any) -> Path:
    operator.setdefault("leaderElection", {"enabled": False})
    path.write_text(yaml.safe_dump({"networkTopologyDiscovery": entries, "operator": operator}))
    return path
