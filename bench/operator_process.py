"""The operator as its own process (``volcano-topology run``), its configuration, and py-spy on it."""

from __future__ import annotations

import contextlib
import json
import os
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

INTERVAL = 5.0  # the emulated provider's scan interval: "a resync interval" of the scenarios
LEASE = "15s,10s,2s"  # the operator's defaults: leaseDuration, renewDeadline, retryPeriod of the failover


def lease_settings(text: str) -> dict[str, Any]:
    """``"8s,3s,1s"`` -> the operator's leaderElection block (renewDeadline + requestTimeout 4 s < leaseDuration)."""
    duration, renew, retry = text.split(",")
    return {"enabled": True, "leaseDuration": duration, "renewDeadline": renew, "retryPeriod": retry}


def entry(source: str, model_file: Path) -> dict[str, Any]:
    return {"source": source, "enabled": True, "interval": f"{INTERVAL:g}s",
            "config": {"modelFile": str(model_file), "watchModelFile": True}}  # fmt: skip


def write_config(path: Path, entries: list[dict[str, Any]], *, lease: str | None = None, node_count: bool = False,
                 concurrency: int = 8) -> Path:  # fmt: skip
    operator = {
        "concurrency": concurrency,
        "leaderElection": lease_settings(lease) if lease else {"enabled": False},
        "status": {"conditions": True, "nodeCount": node_count},
    }
    path.write_text(yaml.safe_dump({"networkTopologyDiscovery": entries, "operator": operator}))
    return path


def write_model(path: Path, model: dict[str, Any]) -> None:
    """Atomically (a rename), so the provider's file watch never reads half a file."""
    tmp = path.with_suffix(".tmp")
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    tmp.write_text(yaml.dump(model, Dumper=dumper, sort_keys=False, width=200))
    os.replace(tmp, path)


def provider_dir(target: Path, sources: list[str]) -> Path:
    """Extra entry points naming the emulated provider class under other sources (the four-provider scenario)."""
    target.mkdir(parents=True, exist_ok=True)
    dist = target / "bench_emulated_sources-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-emulated-sources\nVersion: 0.1\n")
    lines = ["[volcano_topology.providers]", *(f"{s} = volcano_topology_emulated.provider:EmulatedProvider"
                                                 for s in sources)]  # fmt: skip
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return target


@dataclass
class Operator:
    kubeconfig: Path
    config: Path
    workdir: Path
    identity: str = "bench-a"
    provider_path: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    @property
    def log(self) -> Path:
        return self.workdir / f"operator-{self.identity}.log"

    def start(self) -> Operator:
        exe = Path(sys.executable).with_name("volcano-topology")
        args = [str(exe), "run", "--config", str(self.config), "--kubeconfig", str(self.kubeconfig)]
        args += ["--health-port", str(self.port), "--health-address", "127.0.0.1", "--identity", self.identity]
        if self.provider_path:
            args += ["--provider-path", str(self.provider_path)]
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "POD_NAMESPACE")}
        with self.log.open("ab") as log:
            self.started = time.monotonic()
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL)  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the operator's /metrics (None when absent or unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == (f"{name}{{{wanted}}}" if wanted else name):
                return float(value)
        return None

    def wait_ready(self, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self.ready():
                return time.monotonic()
            time.sleep(0.1)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        self.stop_profile()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- py-spy ---------------------------------------------------------------------------

    def start_profile(self, out: Path) -> None:
        """Attach py-spy (speedscope format, non-blocking sampling) until ``stop_profile``."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if self.pid is None or not Path(spy).exists():
            raise RuntimeError("py-spy is not installed (make bench installs .[bench]) or the operator is not running")
        args = [spy, "record", "--pid", str(self.pid), "--format", "speedscope", "--output", str(out),
                "--rate", "100", "--nonblocking"]  # fmt: skip
        self.profiler = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop_profile(self) -> None:
        if self.profiler is None:
            return
        if self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.profiler.wait(30)
        except subprocess.TimeoutExpired:
            self.profiler.kill()
        self.profiler = None


def lease_holder(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return None
    holder: str | None = (answer.get("spec") or {}).get("holderIdentity")
    return holder


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
