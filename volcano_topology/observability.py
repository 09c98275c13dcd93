"""Health, readiness and Prometheus metrics over HTTP, and structured logs.

Metrics are read from the controller's state at scrape time (a custom collector), so
the hot paths only bump plain counters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from volcano_topology.controller import Controller
from volcano_topology.sdk.scanning import ScanningProvider

PREFIX = "volcano_topology"


class ControllerCollector(Collector):
    def __init__(self, controller: Controller, leader: Callable[[], bool]) -> None:
        self.controller = controller
        self.leader = leader

    def collect(self) -> Iterator[Any]:
        c = self.controller

        def counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

        def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "events": counter("events", "Events received from providers", "provider", "type"),
            "writes": counter("writes", "Write requests that changed a HyperNode", "provider", "verb"),
            "failures": counter("failures", "Events or objects not applied, by error class", "provider", "reason"),
            "superseded": counter("superseded_events", "Events replaced by newer ones before applied", "provider"),
            "guard": counter("deletion_guard_trips", "Snapshots refused by the deletion guard", "provider"),
            "restarts": counter("provider_restarts", "Provider restarts after a failure", "provider"),
            "scan_failures": counter("scan_failures", "Failed scans of scanning providers", "provider"),
            "hung_scans": gauge(
                "hung_scan_threads", "Blocking scans past their timeout whose threads still run", "provider"
            ),
            "queue": gauge("queue_depth", "Events waiting in a provider's queue", "provider"),
            "last_sync": gauge(
                "last_successful_sync_timestamp_seconds", "When a provider's events were last fully applied", "provider"
            ),
            "owned": gauge("owned_hypernodes", "HyperNodes a provider owns, as last applied", "provider"),
        }
        latency = SummaryMetricFamily(f"{PREFIX}_apply_seconds", "Time to apply a batch of events", labels=["provider"])
        for name, running in sorted(c.runs.items()):
            channel, stats = running.run.channel, running.run.channel.stats
            for kind, value in stats.events.items():
                families["events"].add_metric([name, kind], value)
            for verb, value in stats.writes.items():
                families["writes"].add_metric([name, verb], value)
            for reason, value in stats.failures.items():
                families["failures"].add_metric([name, reason], value)
            families["superseded"].add_metric([name], stats.superseded)
            families["guard"].add_metric([name], stats.guard_trips)
            families["restarts"].add_metric([name], running.run.restarts)
            provider = running.run.provider
            if isinstance(provider, ScanningProvider):
                families["scan_failures"].add_metric([name], provider.stats.failures)
                families["hung_scans"].add_metric([name], provider.threads.hung)
            families["queue"].add_metric([name], channel.events.qsize())
            if stats.last_sync is not None:
                families["last_sync"].add_metric([name], stats.last_sync)
            families["owned"].add_metric([name], len(channel.owned))
            latency.add_metric([name], count_value=stats.batches, sum_value=stats.apply_seconds)
        yield from families.values()
        yield latency
        yield GaugeMetricFamily(f"{PREFIX}_leader", "1 while this replica leads and writes", value=int(self.leader()))
        yield CounterMetricFamily(
            f"{PREFIX}_config_errors", "Configuration problems found", value=c.state.config_errors_total
        )
        yield CounterMetricFamily(f"{PREFIX}_config_reloads", "Configurations loaded", value=c.state.reloads)


class HealthServer:
    """``/healthz`` (alive), ``/readyz`` (configuration loaded, caches synced; a leader's providers started),
    ``/metrics`` (Prometheus)."""

    def __init__(
        self, controller: Controller, leader: Callable[[], bool], caches_synced: Callable[[], bool], port: int
    ) -> None:
        self.controller, self.leader, self.caches_synced, self.port = controller, leader, caches_synced, port
        self.registry = CollectorRegistry()
        self.registry.register(ControllerCollector(controller, leader))
        self.started = time.time()
        self._runner: web.AppRunner | None = None

    def checks(self) -> dict[str, bool]:
        checks = {
            "configuration loaded": self.controller.config_loaded.is_set(),
            "caches synced": self.caches_synced(),
        }
        if self.leader():
            checks["providers started"] = self.controller.providers_started.is_set()
        return checks

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self.port).start()  # probes come from the kubelet

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptimeSeconds": round(time.time() - self.started, 1)})

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = self.checks()
        body = {"ready": all(checks.values()), "leader": self.leader(), "checks": checks,
                "errors": dict(self.controller.state.errors)}  # fmt: skip
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: int, json_logs: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
