"""`volcano-topology discover ufm --config ...`, offline, against a loopback UFM; credentials from credentialsDir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from ufm_testlib import PASSWORD, SECRETS, USER, Canned, FakeUFM, fat_tree, to_ufm
from volcano_topology_ufm.client import LINKS

from volcano_topology.controlplane.pki import Pki

CLI = [sys.executable, "-m", "volcano_topology.cli"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


def write_config(tmp_path: Path, endpoint: str, pki: Pki) -> Path:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "username").write_text(USER)
    (secret / "password").write_text(PASSWORD + "\n")
    config = tmp_path / "topology.yaml"
    config.write_text(yaml.safe_dump({"networkTopologyDiscovery": [{
        "source": "ufm", "enabled": True, "interval": "10m",
        "config": {"endpoint": endpoint, "caBundle": str(pki.ca_cert), "credentialsDir": str(secret),
                   "retries": 0},
    }]}))  # fmt: skip
    return config


def test_discover_prints_every_tier_and_it_validates(pki: Pki, tmp_path: Path) -> None:
    with FakeUFM(to_ufm(fat_tree(pods=2, leaves=2, spines=2, cores=2, hosts=2)),
                 cert=(pki.serving_cert, pki.serving_key)) as ufm:  # fmt: skip
        config = write_config(tmp_path, ufm.endpoint, pki)
        discovered = run("discover", "ufm", "--config", str(config), "-o", "yaml")
        tree = run("discover", "ufm", "--config", str(config), "-o", "tree")
    assert discovered.returncode == 0, discovered.stderr
    documents = [d for d in yaml.safe_load_all(discovered.stdout) if d]
    assert sorted({d["spec"]["tier"] for d in documents}) == [1, 2, 3]
    assert len(documents) == 7
    assert all(d["metadata"]["labels"]["volcano.sh/network-topology-source"] == "ufm" for d in documents)
    validated = run("validate", "-", stdin=discovered.stdout)
    assert validated.returncode == 0, validated.stdout
    lines = tree.stdout.splitlines()
    assert lines[0].startswith("core-0-x2-") and lines[0].endswith("(tier 3 core)")
    assert "│   ├── leaf-p0-0  (tier 1 leaf; 2 nodes: gpu-p0l0-00, gpu-p0l0-01)" in lines


def test_discover_fails_clearly_on_a_partial_answer_without_leaking(pki: Pki, tmp_path: Path) -> None:
    with FakeUFM(to_ufm(fat_tree(pods=1, leaves=2, spines=1, cores=1, hosts=1)),
                 cert=(pki.serving_cert, pki.serving_key)) as ufm:  # fmt: skip
        ufm.set(LINKS, Canned(200, b"[]"))
        failed = run("discover", "ufm", "--config", str(write_config(tmp_path, ufm.endpoint, pki)))
    assert failed.returncode == 1
    assert "partial answer: links has no switch-to-switch link" in failed.stderr
    assert failed.stdout == ""
    for secret in SECRETS:
        assert secret not in failed.stderr


def test_discover_with_the_readme_example_says_how_to_give_it_credentials(pki: Pki, tmp_path: Path) -> None:
    """The README's ConfigMap names a Secret, which an offline run cannot read: the error says what to do instead."""
    from test_ufm_readme import block

    entry = yaml.safe_load(block("example-configmap")["data"]["config.yaml"])["networkTopologyDiscovery"][0]
    with FakeUFM(to_ufm(fat_tree(pods=1, leaves=2, spines=1, cores=1, hosts=1)),
                 cert=(pki.serving_cert, pki.serving_key)) as ufm:  # fmt: skip
        entry["config"].update(endpoint=ufm.endpoint, caBundle=str(pki.ca_cert), retries=0)
        config = tmp_path / "ufm.yaml"
        config.write_text(yaml.safe_dump({"networkTopologyDiscovery": [entry]}))
        failed = run("discover", "ufm", "--config", str(config), "-o", "tree")
        secret = tmp_path / "secret"
        secret.mkdir()
        (secret / "username").write_text(USER)
        (secret / "password").write_text(PASSWORD)
        entry["config"]["credentialsDir"] = str(secret)
        config.write_text(yaml.safe_dump({"networkTopologyDiscovery": [entry]}))
        done = run("discover", "ufm", "--config", str(config), "-o", "tree")
    assert failed.returncode == 1
    assert "`volcano-topology discover` reads no Secret: there, set credentialsDir" in failed.stderr
    assert done.returncode == 0, done.stderr
    assert "leaf-p0-0" in done.stdout
