"""Run one provider once, offline, and show the HyperNodes it would have written.

Nothing talks to a cluster: the provider's events are collected until it sends a
SNAPSHOT, goes quiet, or the time runs out. The result is checked exactly as the writer
would check it (ownership labels, post-process hook, CRD and admission rules, strict tree).

A provider that fails ends the run at once with a :class:`DiscoveryError` whose
``provider_error`` is the provider's own exception (traceback included): ``start()``
raising, or, for a :class:`~volcano_topology.sdk.scanning.ScanningProvider`, a scan
failing before anything was sent (``scan()`` raising, or its result refused, e.g. a
``TreeError`` from ``TreeBuilder.build()``, which has no traceback of the vendor's code).
A provider whose ``start()`` returns without sending anything ends the run at once too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from volcano_topology.api import HyperNode
from volcano_topology.plan import with_ownership
from volcano_topology.problems import Problem
from volcano_topology.provider import Event, EventType, Provider, ProviderContext, Reply
from volcano_topology.runner import NoSecrets, StaticCluster
from volcano_topology.sdk.scanning import ScanningProvider
from volcano_topology.tree import tree_problems
from volcano_topology.validation import check_document


class DiscoveryError(RuntimeError):
    """The provider could not be run, or produced nothing usable.

    ``provider_failed`` is True when the provider itself failed (rather than its setup);
    ``provider_error`` is the exception the provider's own code raised, when there is one.
    """

    def __init__(
        self, message: str, provider_error: BaseException | None = None, *, provider_failed: bool = False
    ) -> None:
        super().__init__(message)
        self.provider_error = provider_error
        self.provider_failed = provider_failed or provider_error is not None


@dataclass
class Discovery:
    hypernodes: dict[str, HyperNode] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    events: int = 0


async def discover_once(
    source: str,
    provider: Provider,
    nodes: Mapping[str, Mapping[str, str]] | None = None,
    *,
    within: float = 30.0,
    quiet: float = 1.0,
    admission: bool = True,
) -> Discovery:
    events: asyncio.Queue[Event] = asyncio.Queue()
    replies: asyncio.Queue[Reply] = asyncio.Queue()
    ctx = ProviderContext(source, logging.getLogger(f"volcano_topology.provider.{source}"), StaticCluster(nodes or {}),
                          NoSecrets())  # fmt: skip
    scan_errors: list[BaseException] = []
    if isinstance(provider, ScanningProvider):
        _record_scan_errors(provider, scan_errors.append)
    task = asyncio.create_task(provider.start(events, replies, ctx))
    result = Discovery()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = loop.time()  # when the last event arrived (or the run started)
    try:
        while True:
            if not events.empty():
                event = events.get_nowait()
                result.events += 1
                last = loop.time()
                _fold(result.hypernodes, event)
                if event.type is EventType.SNAPSHOT:
                    break
                continue
            if task.done():
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise DiscoveryError(f"provider {source} failed: {type(error).__name__}: {error}", error)
                if not result.events:
                    raise DiscoveryError(f"provider {source}: start() returned without sending anything")
                break
            if isinstance(provider, ScanningProvider) and provider.stats.failures and not result.events:
                error = scan_errors[-1] if scan_errors else None
                message = f"provider {source}: scan failed: {provider.stats.last_error}"
                raise DiscoveryError(message, error, provider_failed=True)
            now = loop.time()
            if now >= deadline or (result.events and now - last >= quiet):
                break
            await asyncio.sleep(min(_POLL, deadline - now))
    finally:
        ctx.stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await provider.stop()
    if not result.events:
        raise DiscoveryError(f"provider {source} sent nothing within {within:.0f}s")
    result.hypernodes, result.problems = _as_written(source, provider, result.hypernodes, admission)
    return result


_POLL = 0.02  # seconds between looks at the queue, the provider's task and its scan failures


def _record_scan_errors(provider: ScanningProvider, record: Callable[[BaseException], None]) -> None:
    """Wrap this instance's ``scan`` so an exception it raises (or its awaitable raises) is recorded, then re-raised.

    The wrapper keeps ``scan``'s kind (coroutine function or not), which decides where
    :class:`ScanningProvider` runs it. ``record`` may be called from a scan thread.
    """
    scan = provider.scan

    async def watched(awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            record(exc)
            raise

    if inspect.iscoroutinefunction(scan):

        async def recorded_async() -> Any:
            return await watched(scan())

        provider.__dict__["scan"] = recorded_async
        return

    def recorded() -> Any:
        try:
            outcome = scan()
        except Exception as exc:
            record(exc)
            raise
        return watched(outcome) if inspect.isawaitable(outcome) else outcome

    provider.__dict__["scan"] = recorded


def _fold(hypernodes: dict[str, HyperNode], event: Event) -> None:
    if not isinstance(event, Event):
        raise DiscoveryError(f"the provider queued {type(event).__name__}, not an Event")
    if event.type is EventType.SNAPSHOT:
        hypernodes.clear()
        hypernodes.update({h.metadata.name or "?": h for h in event.hypernodes})
    elif event.type is EventType.DELETE:
        hypernodes.pop(event.target, None)
    elif event.hypernode is not None:
        hypernodes[event.target] = event.hypernode


def _as_written(
    source: str, provider: Provider, found: Mapping[str, HyperNode], admission: bool
) -> tuple[dict[str, HyperNode], list[Problem]]:
    written: dict[str, HyperNode] = {}
    problems: list[Problem] = []
    for name in sorted(found):
        candidate = provider.post_process(found[name]) if provider.has_post_process() else found[name]
        verdict = check_document(with_ownership(candidate, source).to_dict(), admission=admission)
        problems.extend(Problem(p.path, p.rule, p.message, p.level, name) for p in verdict.problems)
        if verdict.hypernode is not None and verdict.ok:
            written[name] = verdict.hypernode
    problems.extend(tree_problems(written))
    return written, problems


def load_nodes(text: str) -> dict[str, dict[str, str]]:
    """Nodes as a list of names, a name -> labels mapping, or a Kubernetes NodeList / List."""
    data = yaml.safe_load(text)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return {
            item["metadata"]["name"]: dict(item["metadata"].get("labels") or {})
            for item in data["items"]
            if isinstance(item, dict) and isinstance(item.get("metadata"), dict) and "name" in item["metadata"]
        }
    if isinstance(data, dict):
        return {str(name): {str(k): str(v) for k, v in (labels or {}).items()} for name, labels in data.items()}
    if isinstance(data, list):
        return {str(name): {} for name in data}
    raise DiscoveryError("--nodes: expected a list of names, a mapping of name to labels, or a NodeList")


def provider_config(text: str, source: str) -> dict[str, Any]:
    """A provider's config from a file: either the config itself, or Volcano's discovery list naming ``source``."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise DiscoveryError("--config: expected a mapping")
    entries = data.get("networkTopologyDiscovery")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("source") == source:
                config = entry.get("config") or {}
                if not isinstance(config, dict):
                    raise DiscoveryError(f"--config: the config of source {source} is not a mapping")
                return config
        raise DiscoveryError(f"--config: networkTopologyDiscovery has no entry with source {source}")
    return data


def render(hypernodes: Mapping[str, HyperNode], output: str) -> str:
    ordered = sorted(hypernodes.values(), key=lambda h: (-(h.spec.tier if h.spec else 0), h.name))
    if output == "json":
        return (
            json.dumps({"apiVersion": "v1", "kind": "List", "items": [h.to_dict() for h in ordered]}, indent=2) + "\n"
        )
    if output == "tree":
        return render_tree(hypernodes)
    return yaml.safe_dump_all([h.to_dict() for h in ordered], sort_keys=False)


def render_tree(hypernodes: Mapping[str, HyperNode]) -> str:
    """The tree as ``volcano-topology tree`` shows it (plain text)."""
    from volcano_topology.views.model import Topology
    from volcano_topology.views.treeview import render_tree as render

    return render(Topology.of(hypernodes))
