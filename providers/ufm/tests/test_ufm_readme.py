"""The README's ConfigMap and Secret, as written, against a loopback UFM (only endpoint and caBundle replaced)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ufm_testlib import FakeUFM, Model, first_outcome, members, tiers, to_ufm

from volcano_topology.config import parse_configuration
from volcano_topology.controlplane.pki import Pki
from volcano_topology.registry import instantiate, load

README = Path(__file__).resolve().parents[1] / "README.md"


def block(marker: str) -> dict[str, Any]:
    text = README.read_text()
    match = re.search(rf"<!-- {marker} -->\n```yaml\n(.*?)```", text, re.S)
    assert match, f"README has no yaml block after <!-- {marker} -->"
    loaded: dict[str, Any] = yaml.safe_load(match.group(1))
    return loaded


def fabric() -> Model:
    """Host names as a cluster manager might give them: FQDN-ish, and the UFM server itself."""
    model = Model(switches=["spine-1", "leaf-1", "leaf-2"], cables=[("leaf-1", "spine-1"), ("leaf-2", "spine-1")])
    model.hosts = {"GPU-0001.cluster": ["leaf-1"], "gpu-0002": ["leaf-1"], "GPU-0003.cluster": ["leaf-2"],
                   "ufm-server": ["leaf-2"]}  # fmt: skip
    return model


def test_the_readme_example_runs_as_written(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    config_map, secret = block("example-configmap"), block("example-secret")
    assert config_map["kind"] == "ConfigMap" and secret["kind"] == "Secret"
    configuration = parse_configuration(config_map["data"]["config.yaml"])
    entry = configuration.enabled()["ufm"]
    assert entry.credentials is not None and entry.credentials.secret_ref is not None
    assert entry.credentials.secret_ref.name == secret["metadata"]["name"]
    assert entry.interval == 600
    credentials = {key: str(value).encode() for key, value in secret["stringData"].items()}
    user, password = secret["stringData"]["username"], secret["stringData"]["password"]
    with FakeUFM(to_ufm(fabric()), cert=(pki.serving_cert, pki.serving_key), user=user, password=password) as ufm:
        config = {**entry.config, "endpoint": ufm.endpoint.removeprefix("https://"), "caBundle": str(pki.ca_cert)}
        provider = instantiate(load(["ufm"])[0]["ufm"], config)
        event, error = first_outcome(provider, credentials)  # type: ignore[arg-type]
    assert error is None and event is not None
    assert tiers(event) == {1: ["leaf-1", "leaf-2"], 2: ["spine-1"]}
    assert members(event)["leaf-1"] == ["gpu-0001", "gpu-0002"]
    assert members(event)["leaf-2"] == ["gpu-0003"]  # ufm-server excluded
    assert provider.gauges()["unmapped_hosts"] == 0
    assert provider.gauges()["excluded_hosts"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "ufm-server" in r.getMessage()]


def config_table() -> dict[str, str]:
    """The README's configuration table: key -> its default column, one entry per key of a row."""
    text = README.read_text().split("| key | default | meaning |", 1)[1]
    rows: dict[str, str] = {}
    for line in text.splitlines()[2:]:
        if not line.startswith("|"):
            break
        keys, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = re.findall(r"`([^`]+)`", keys)
        values = re.findall(r"`([^`]+)`", default) or [default]
        for i, name in enumerate(names):
            rows[name] = values[i] if len(values) == len(names) else default
    return rows


NOT_LITERAL = {"endpoint": "(required)", "caBundle": "system CAs", "credentialsDir": "none"}


def test_the_readme_table_lists_every_key_with_its_real_default() -> None:
    """Passing the README's default explicitly gives the same settings as leaving the key out."""
    from volcano_topology_ufm.client import make_auth
    from volcano_topology_ufm.settings import UFMSettings

    table = config_table()
    fields = {info.alias or name for name, info in UFMSettings.model_fields.items()}
    assert set(table) == fields
    default = UFMSettings(endpoint="ufm")
    for key, text in table.items():
        if key in NOT_LITERAL:
            assert text == NOT_LITERAL[key], key
            continue
        if key == "apiPrefix":  # one default per kind of authentication
            assert text == "`/ufmRest`, `/ufmRestV3`" and default.api_prefix is None
            assert make_auth(default, {"username": b"u", "password": b"p"}).prefix == "/ufmRest"
            assert make_auth(default, {"token": b"t"}).prefix == "/ufmRestV3"
            continue
        given = UFMSettings.model_validate({"endpoint": "ufm", key: yaml.safe_load(text)})
        assert given == default, f"{key}: the README says the default is {text}"
