"""Configuration: Volcano's shape, durations, and errors that name their place."""

from __future__ import annotations

import json
import logging

import pytest

from volcano_topology.config import ConfigError, parse_configuration, parse_duration
from volcano_topology.observability import JsonFormatter

VOLCANO = """
networkTopologyDiscovery:
  - source: ufm
    enabled: true
    interval: 10m
    credentials:
      secretRef:
        name: ufm-credentials
        namespace: volcano-system
    config:
      endpoint: https://ufm-server:8080
      insecureSkipVerify: true
  - source: label
    enabled: false
    config: {}
someOtherVolcanoSetting: true
"""


def test_volcano_configuration_is_accepted_as_it_is() -> None:
    config = parse_configuration(VOLCANO)
    assert list(config.enabled()) == ["ufm"]
    ufm = config.enabled()["ufm"]
    assert ufm.interval == 600
    assert ufm.credentials is not None
    assert ufm.credentials.secret_ref is not None
    assert ufm.credentials.secret_ref.namespace == "volcano-system"
    assert config.operator.leader_election.enabled


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("500ms", 0.5), (15, 15)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10 minutes", "-5s", "0s", "", True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("networkTopologyDiscovery: [{source: a, interval: soon}]", "networkTopologyDiscovery[0].interval"),
        ("networkTopologyDiscovery: [{source: a}, {source: a}]", "listed twice"),
        ("networkTopologyDiscovery: [{source: a, colour: red}]", "networkTopologyDiscovery[0].colour"),
        ("operator: {leaderElection: {leaseDuration: 5s, renewDeadline: 10s}}", "retryPeriod < renewDeadline"),
        ("operator: {deletionGuard: {maxDeleteFraction: 2}}", "operator.deletionGuard.maxDeleteFraction"),
        ("[not, a, mapping]", "must be a mapping"),
        ("networkTopologyDiscovery: [unclosed", "not valid YAML"),
    ],
)
def test_errors_name_their_place(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_configuration(text)


def test_json_logs() -> None:
    record = logging.LogRecord("volcano_topology.x", logging.WARNING, __file__, 1, "provider %s failed", ("ufm",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "volcano_topology.x",
        "provider ufm failed",
    )


def test_run_reads_its_own_config_map_by_default_not_volcanos(monkeypatch: pytest.MonkeyPatch) -> None:
    from volcano_topology.cli import default_config_map
    from volcano_topology.controller import ConfigSource

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert default_config_map() == "volcano-system/volcano-topology"
    monkeypatch.setenv("POD_NAMESPACE", "gpu-ops")
    source = ConfigSource.parse(None, default_config_map())
    assert (source.namespace, source.name) == ("gpu-ops", "volcano-topology")
    volcano = parse_configuration("").operator.volcano
    assert (volcano.namespace, volcano.config_map, volcano.builtin_sources) == (
        "volcano-system", "volcano-controller-configmap", ["label", "ufm"],
    )  # fmt: skip


def test_brackets_nested_thousands_deep_are_refused_before_yaml_parses_them() -> None:
    with pytest.raises(ConfigError, match="nested more than 100 deep"):
        parse_configuration("networkTopologyDiscovery: " + "[" * 30_000)
    nested = "networkTopologyDiscovery: []\noperator: {status: {conditions: true}}\n"
    assert parse_configuration(nested).operator.status.conditions


def test_an_interval_past_floats_range_names_the_field() -> None:
    text = "networkTopologyDiscovery:\n  - source: ufm\n    interval: " + "9" * 400 + "\n"
    with pytest.raises(ConfigError, match=r"networkTopologyDiscovery\[0\]\.interval.*too large"):
        parse_configuration(text)
