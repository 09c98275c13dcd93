"""Credentials never show in a repr, a log line built from one, or a configuration error message."""

from __future__ import annotations

import logging

import pytest

from volcano_topology.config import ConfigError, parse_configuration
from volcano_topology.controller import Desired
from volcano_topology.provider import ProviderContext
from volcano_topology.runner import NoSecrets, StaticCluster

SECRET = "hunter2-s3cr3t"


def test_a_provider_context_does_not_show_its_credentials() -> None:
    ctx = ProviderContext(
        "ufm", logging.getLogger("t"), StaticCluster(), NoSecrets(), credentials={"password": SECRET.encode()}
    )
    assert SECRET not in repr(ctx) and SECRET not in str(ctx)
    assert ctx.credentials["password"] == SECRET.encode(), "the provider still gets them"


def test_a_desired_provider_record_does_not_show_its_credentials() -> None:
    record = Desired(entry=None, loaded=None, credentials={"password": SECRET.encode()}, fingerprint="f")  # type: ignore[arg-type]
    assert SECRET not in repr(record)


@pytest.mark.parametrize(
    "text",
    [
        f"networkTopologyDiscovery:\n  - source: ufm\n    config: {{password: {SECRET}: x}}\n",
        f'networkTopologyDiscovery:\n  - source: ufm\n    config:\n      password: "{SECRET}\n',
        f"networkTopologyDiscovery:\n  - source: ufm\n    config:\n      password: {SECRET}\n\t bad: tab\n",
    ],
)
def test_a_yaml_error_names_the_place_but_never_quotes_the_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_configuration(text)
    message = str(caught.value)
    assert SECRET not in message
    assert "line " in message and "column " in message


def test_a_validation_error_does_not_echo_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_configuration(f"networkTopologyDiscovery:\n  - source: ufm\n    interval: {SECRET}\n")
    assert SECRET not in str(caught.value)
    assert "networkTopologyDiscovery[0].interval" in str(caught.value)
