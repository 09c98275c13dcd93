"""A provider's own figures (``Provider.gauges()``) as Prometheus gauges."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from volcano_topology.observability import ControllerCollector


class Figures:
    def __init__(self, figures: Mapping[str, Any] | Exception) -> None:
        self.figures = figures

    def gauges(self) -> Mapping[str, Any]:
        if isinstance(self.figures, Exception):
            raise self.figures
        return self.figures


def collect(**providers: Figures) -> dict[str, list[tuple[dict[str, str], float]]]:
    runs = {name: SimpleNamespace(run=SimpleNamespace(provider=p)) for name, p in providers.items()}
    collector = ControllerCollector(SimpleNamespace(runs=runs), lambda: True)  # type: ignore[arg-type]
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in collector._provider_gauges()}


def test_each_key_is_one_gauge_labelled_by_provider() -> None:
    found = collect(ufm=Figures({"unmapped_hosts": 3, "hosts": 40}), ib=Figures({"unmapped_hosts": 0.0}))
    assert found["volcano_topology_provider_unmapped_hosts"] == [({"provider": "ib"}, 0.0), ({"provider": "ufm"}, 3.0)]
    assert found["volcano_topology_provider_hosts"] == [({"provider": "ufm"}, 40.0)]


def test_bad_keys_values_and_a_raising_provider_are_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        found = collect(
            a=Figures({"Bad-Key": 1, "flag": True, "text": "3", "ok": 1}), b=Figures(RuntimeError("vendor bug"))
        )
    assert found == {"volcano_topology_provider_ok": [({"provider": "a"}, 1.0)]}
    assert "'Bad-Key'" in caplog.text
    assert "gauges() failed" in caplog.text
