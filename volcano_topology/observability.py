"""Health, readiness and Prometheus metrics over HTTP, and structured logs.

Metrics are read from the controller's state at scrape time (a custom collector), so
the hot paths only bump plain counters.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
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
            "event_made": gauge(
                "last_applied_event_timestamp_seconds",
                "When the provider made the newest event of the last batch applied whole",
                "provider",
            ),
            "event_latency": gauge(
                "last_applied_event_latency_seconds",
                "From the provider making that event until its changes were written",
                "provider",
            ),
            "owned": gauge("owned_hypernodes", "HyperNodes a provider owns, as last applied", "provider"),
            "repairs": counter("repairs", "Owned HyperNodes put back after someone else changed them", "provider"),
            "contested": gauge(
                "contested_hypernodes", "Owned HyperNodes another writer keeps changing, left alone", "provider"
            ),
            "crashes": counter("writer_errors", "Unexpected exceptions the writer survived", "provider"),
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
            families["repairs"].add_metric([name], stats.repairs)
            families["contested"].add_metric([name], sum(channel.is_contested(n) for n in list(channel.contested)))
            families["crashes"].add_metric([name], stats.crashes)
            if stats.last_sync is not None:
                families["last_sync"].add_metric([name], stats.last_sync)
            if stats.last_applied_event is not None and stats.last_event_latency is not None:
                families["event_made"].add_metric([name], stats.last_applied_event)
                families["event_latency"].add_metric([name], stats.last_event_latency)
            families["owned"].add_metric([name], len(channel.owned))
            latency.add_metric([name], count_value=stats.batches, sum_value=stats.apply_seconds)
        yield from families.values()
        yield latency
        yield from self._provider_gauges()
        nodes = c.nodes
        if nodes.started:
            yield GaugeMetricFamily(
                f"{PREFIX}_nodes_watched", "Nodes in the operator's Node view", value=len(nodes.labels())
            )
            yield CounterMetricFamily(
                f"{PREFIX}_node_lists", "Full LISTs of Nodes (one at start, one per expired watch)", value=nodes.lists
            )
        cache = c.hypernodes
        yield GaugeMetricFamily(
            f"{PREFIX}_hypernodes_watched", "HyperNodes in the operator's cache", value=len(cache.items())
        )
        yield CounterMetricFamily(
            f"{PREFIX}_hypernode_lists", "Full LISTs of HyperNodes (one at start, one per expired watch)",
            value=cache.lists,
        )  # fmt: skip
        status = c.status.stats
        yield CounterMetricFamily(f"{PREFIX}_status_writes", "HyperNode status writes", value=status.writes)
        yield CounterMetricFamily(
            f"{PREFIX}_status_conflicts", "Status writes refused because the object had changed (recomputed)",
            value=status.conflicts,
        )  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_node_counts", "nodeCount values computed (only when a spec or what its selectors read changed)",
            value=status.counts,
        )  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_node_change_marks", "HyperNodes marked for a recount because a Node change concerned them",
            value=status.node_marks,
        )  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_leadership_terms", "Terms as leader this process began", value=c.terms
        )  # fmt: skip
        yield GaugeMetricFamily(f"{PREFIX}_leader", "1 while this replica leads and writes", value=int(self.leader()))
        if c.fence_check is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_writer_fence",
                "The API server's writer fence for this Lease as the leader last checked it: 1 in force, 0 not in "
                "force (a deposed leader's late create could land), -1 not checked or the check failed",
                value=int(c.fence_state),
            )
        yield CounterMetricFamily(
            f"{PREFIX}_config_errors", "Configuration problems found", value=c.state.config_errors_total
        )
        yield CounterMetricFamily(f"{PREFIX}_config_reloads", "Configurations loaded", value=c.state.reloads)

    def _provider_gauges(self) -> Iterator[GaugeMetricFamily]:
        """Each key of a provider's ``gauges()`` as ``volcano_topology_provider_<key>{provider=...}``."""
        found: dict[str, GaugeMetricFamily] = {}
        for name, running in sorted(self.controller.runs.items()):
            try:
                figures = dict(running.run.provider.gauges())
            except Exception:
                log.exception("provider %s: gauges() failed", name)
                continue
            for key, value in sorted(figures.items()):
                if not isinstance(key, str) or not _METRIC_KEY.fullmatch(key) or not _is_number(value):
                    _warn_once(f"provider {name}: gauges() key {key!r} = {value!r} left out "
                               "(keys are [a-z_][a-z0-9_]*, values numbers)")  # fmt: skip
                    continue
                family = found.get(key)
                if family is None:
                    family = found[key] = GaugeMetricFamily(
                        f"{PREFIX}_provider_{key}", f"Provider figure {key!r} (from the provider's gauges())",
                        labels=["provider"],
                    )  # fmt: skip
                family.add_metric([name], float(value))
        yield from found.values()


_METRIC_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_warned: set[str] = set()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


log = logging.getLogger(__name__)

LivenessCheck = Callable[[], bool]


class HealthPortUnavailable(OSError):
    """The health server could not listen on its address and port (in use, not permitted, no such address)."""


class HealthServer:
    """``/healthz`` (liveness), ``/readyz`` (configuration loaded, caches synced; a leader's providers
    started), ``/metrics`` (Prometheus), served on ``host``:``port``.

    Liveness is a set of named checks, each a callable returning True while healthy: given as
    ``liveness`` or added with :meth:`add_liveness_check`. ``/healthz`` runs every check on each
    request and answers 200 ``{"status": "ok", "checks": {...}}`` when all pass, else 503
    ``{"status": "failing", "failing": [names], "checks": {...}}``; a check that raises counts as
    failing. Checks run on the event loop: they must be quick and must not block.
    """

    def __init__(
        self,
        controller: Controller,
        leader: Callable[[], bool],
        caches_synced: Callable[[], bool],
        port: int,
        *,
        host: str = "0.0.0.0",  # probes come from the kubelet, not from inside the pod
        liveness: Mapping[str, LivenessCheck] | None = None,
    ) -> None:
        self.controller, self.leader, self.caches_synced = controller, leader, caches_synced
        self.host, self.port = host, port
        self.liveness: dict[str, LivenessCheck] = dict(liveness or {})
        self.registry = CollectorRegistry()
        self.registry.register(ControllerCollector(controller, leader))
        self.started = time.time()
        self._runner: web.AppRunner | None = None

    def add_liveness_check(self, name: str, check: LivenessCheck) -> None:
        """Make ``/healthz`` fail (503, naming ``name``) whenever ``check()`` is false or raises."""
        self.liveness[name] = check

    def liveness_checks(self) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self.liveness.items():
            try:
                results[name] = bool(check())
            except Exception:
                log.exception("liveness check %r raised", name)
                results[name] = False
        return results

    def checks(self) -> dict[str, bool]:
        checks = {
            "configuration loaded": self.controller.config_loaded.is_set(),
            "caches synced": self.caches_synced(),
        }
        if self.leader():
            checks["providers started"] = self.controller.providers_started.is_set()
            checks["writers making progress"] = not self.controller.writer_problems()
        return checks

    async def start(self) -> None:
        """Listen, or raise :class:`HealthPortUnavailable` naming the address and port."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise HealthPortUnavailable(
                exc.errno, f"cannot serve /healthz, /readyz and /metrics on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from exc  # fmt: skip

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        checks = self.liveness_checks()
        failing = [name for name, ok in checks.items() if not ok]
        body: dict[str, Any] = {
            "status": "failing" if failing else "ok",
            "uptimeSeconds": round(time.time() - self.started, 1),
            "checks": checks,
        }
        if failing:
            body["failing"] = failing
        return web.json_response(body, status=503 if failing else 200)

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = self.checks()
        errors = dict(self.controller.state.errors)
        errors.update((f"(writer {i})", problem) for i, problem in enumerate(self.controller.writer_problems()))
        body = {"ready": all(checks.values()), "leader": self.leader(), "checks": checks, "errors": errors}
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
