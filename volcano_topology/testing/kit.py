"""The test kit's implementation; import its names from ``volcano_topology.testing``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volcano_topology import kube, ownership
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.controlplane.build import BuildError, ensure_binaries
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.discover import Discovery, discover_once
from volcano_topology.problems import Problem
from volcano_topology.provider import Event, Provider, ProviderContext, Reply
from volcano_topology.retries import RetryPolicy
from volcano_topology.runner import ProviderRun
from volcano_topology.tree import tree_problems
from volcano_topology.writer import Writer, WriterSettings

BUILD_HINT = "run `volcano-topology control-plane build` once (minutes the first time), or set KUBEBUILDER_ASSETS"
# Retries short enough for a test, long enough for a busy machine.
TEST_RETRIES = RetryPolicy(initial=0.05, maximum=0.5, jitter=0.05, attempts=8, deadline=20.0)


class ControlPlaneUnavailable(RuntimeError):
    """The local control plane's binaries are not built (the message says how to build them)."""


# -- a real control plane --------------------------------------------------------------


def start_control_plane(workdir: Path) -> LocalControlPlane:
    """Start kube-apiserver + etcd in ``workdir`` and install the HyperNode CRD. Never builds binaries."""
    try:
        binaries = ensure_binaries(build=False)
    except BuildError as exc:
        raise ControlPlaneUnavailable(f"no local control plane: {BUILD_HINT} ({exc})") from exc
    plane = LocalControlPlane(workdir, binaries=binaries, build=False)
    plane.start()
    try:
        api: Any = kube.api_client(plane.kubeconfig)
        try:
            kube.apply_crd(api)
            wait_until_servable(api)
        finally:
            api.close()
    except BaseException:
        plane.stop()
        raise
    return plane


def wait_until_servable(api: Any, timeout: float = 30.0) -> None:
    """A fresh CRD can answer 429 or 404 while its storage initialises: wait for a dry-run create to pass."""
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    probe = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperNode",
        "metadata": {"name": "vt-readiness-probe"},
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": "probe"}}}]},
    }
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, probe, dry_run="All")
            return
        except client.ApiException as exc:
            last = exc
        time.sleep(0.25)
    raise TimeoutError(f"HyperNodes were not servable within {timeout:.0f}s: {last}")


def _kubeconfig(target: LocalControlPlane | str | Path) -> str:
    return str(target.kubeconfig if isinstance(target, LocalControlPlane) else target)


# -- offline ---------------------------------------------------------------------------


@dataclass
class Offline:
    """What one offline run saw: every event in order, and the HyperNodes as the writer would write them."""

    events: list[Event]
    hypernodes: dict[str, HyperNode]
    problems: list[Problem]

    @property
    def names(self) -> list[str]:
        return sorted(self.hypernodes)


class _Tee(asyncio.Queue[Event]):
    """The provider's event queue: forwards to discover's queue and keeps a copy of each event."""

    def __init__(self, target: asyncio.Queue[Event], seen: list[Event]) -> None:
        super().__init__()
        self._target, self._seen = target, seen

    async def put(self, item: Event) -> None:
        self.put_nowait(item)

    def put_nowait(self, item: Event) -> None:
        self._seen.append(item)
        self._target.put_nowait(item)


class _Recording(Provider):
    def __init__(self, inner: Provider, seen: list[Event]) -> None:
        super().__init__(inner.settings)
        self.inner, self.seen = inner, seen

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        await self.inner.start(_Tee(events, self.seen), replies, ctx)

    async def stop(self) -> None:
        await self.inner.stop()

    def post_process(self, hypernode: HyperNode) -> HyperNode:
        return self.inner.post_process(hypernode)

    def has_post_process(self) -> bool:
        return self.inner.has_post_process()


async def discover_provider(
    provider: Provider,
    name: str = "provider",
    nodes: Mapping[str, Mapping[str, str]] | None = None,
    *,
    within: float = 10.0,
    quiet: float = 0.5,
    admission: bool = True,
) -> Offline:
    """Run ``provider`` offline until it sends a SNAPSHOT, is ``quiet`` for a while, or ``within`` runs out.

    Raises ``volcano_topology.discover.DiscoveryError`` when it fails or sends nothing.
    """
    seen: list[Event] = []
    found: Discovery = await discover_once(
        name, _Recording(provider, seen), nodes, within=within, quiet=quiet, admission=admission
    )
    return Offline(seen, found.hypernodes, found.problems)


def run_offline(
    provider: Provider,
    name: str = "provider",
    nodes: Mapping[str, Mapping[str, str]] | None = None,
    *,
    within: float = 10.0,
    quiet: float = 0.5,
    admission: bool = True,
) -> Offline:
    """:func:`discover_provider` for a synchronous test (it runs its own event loop)."""
    return asyncio.run(discover_provider(provider, name, nodes, within=within, quiet=quiet, admission=admission))


# -- through the real writer -----------------------------------------------------------


@dataclass
class Applied:
    """What the API server holds for the provider after the run, and what the writer told it."""

    objects: dict[str, dict[str, Any]]  # name -> the object as the API server returns it
    replies: list[Reply] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # exceptions the provider raised (it was restarted)

    @property
    def names(self) -> list[str]:
        return sorted(self.objects)

    @property
    def hypernodes(self) -> dict[str, HyperNode]:
        return {name: HyperNode.model_validate(obj) for name, obj in self.objects.items()}

    def members(self, name: str) -> list[str]:
        """The member names of ``name`` (nodes or HyperNodes), in order."""
        return [m["selector"]["exactMatch"]["name"] for m in self.objects[name]["spec"].get("members", [])]


Until = Callable[[Mapping[str, HyperNode]], bool]


async def apply_provider(
    target: LocalControlPlane | str | Path,
    provider: Provider,
    name: str = "provider",
    *,
    until: Until | None = None,
    nodes: Mapping[str, Mapping[str, str]] | None = None,
    interval: float | None = None,
    credentials: Mapping[str, bytes] | None = None,
    within: float = 30.0,
    settle: float = 0.5,
    keep: bool = False,
) -> Applied:
    """Run ``provider`` as the operator would (``ProviderRun`` and the real ``Writer``) against ``target``.

    ``target`` is a ``LocalControlPlane`` (the ``vt_control_plane`` fixture) or a kubeconfig path.
    The run ends once ``until(owned)`` holds (``owned``: name -> HyperNode as last applied), or
    by default once the writer has finished a batch, and nothing more happened for ``settle``
    seconds. Objects of source ``name`` left by an earlier run are deleted first, and the
    objects written are deleted afterwards unless ``keep``. A run that does not end within
    ``within`` seconds raises ``TimeoutError`` naming the replies and provider failures so far.
    """
    api: Any = kube.api_client(_kubeconfig(target), pool_size=4)
    hypernodes = kube.HyperNodeClient(api, concurrency=4, timeout=5.0)
    try:
        await asyncio.to_thread(_delete_source, api, name)
        writer = Writer(hypernodes, WriterSettings(retry=TEST_RETRIES))
        run = ProviderRun(
            name, provider, writer, interval=interval, nodes=nodes, credentials=credentials, initial_backoff=0.1
        )
        replies: list[Reply] = []
        run.start()
        try:
            await _wait_done(run, replies, until, within, settle)
        finally:
            await run.stop(grace=1.0, drain=5.0)
            _drain(run, replies)
        objects = await asyncio.to_thread(_list_source, api, name)
        if not keep:
            await asyncio.to_thread(_delete_source, api, name)
        failures = [run.last_error] if run.last_error else []
        return Applied(objects, replies, failures)
    finally:
        hypernodes.close()
        api.close()


def run_on_cluster(
    target: LocalControlPlane | str | Path,
    provider: Provider,
    name: str = "provider",
    *,
    until: Until | None = None,
    nodes: Mapping[str, Mapping[str, str]] | None = None,
    interval: float | None = None,
    credentials: Mapping[str, bytes] | None = None,
    within: float = 30.0,
    settle: float = 0.5,
    keep: bool = False,
) -> Applied:
    """:func:`apply_provider` for a synchronous test (it runs its own event loop)."""
    applying = apply_provider(
        target, provider, name, until=until, nodes=nodes, interval=interval, credentials=credentials,
        within=within, settle=settle, keep=keep,
    )  # fmt: skip
    return asyncio.run(applying)


async def _wait_done(run: ProviderRun, replies: list[Reply], until: Until | None, within: float, settle: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    channel = run.channel
    quiet_since: float | None = None
    seen = (-1, -1)
    while True:
        now = loop.time()
        _drain(run, replies)
        idle = channel.idle.is_set() and channel.pending() == 0
        done = until(channel.owned) if until is not None else channel.stats.batches > 0
        state = (channel.stats.batches, len(replies))
        if done and idle and state == seen:
            quiet_since = quiet_since if quiet_since is not None else now
            if now - quiet_since >= settle:
                return
        else:
            quiet_since = None
        seen = state
        if now > deadline:
            raise TimeoutError(
                f"provider {run.name} did not finish within {within:.0f}s: {len(channel.owned)} objects applied, "
                f"replies {[str(r.error) for r in replies]}, last failure {run.last_error}"
            )
        await asyncio.sleep(0.05)


def _drain(run: ProviderRun, replies: list[Reply]) -> None:
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            replies.append(run.channel.replies.get_nowait())


def _list_source(api: Any, name: str) -> dict[str, dict[str, Any]]:
    from kubernetes import client

    selector = f"{ownership.SOURCE_LABEL}={name}"
    items: Any = client.CustomObjectsApi(api).list_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector=selector
    )
    return {item["metadata"]["name"]: item for item in items["items"]}


def _delete_source(api: Any, name: str) -> None:
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    for item in _list_source(api, name):
        with contextlib.suppress(client.ApiException):
            objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item)


# -- assertions ------------------------------------------------------------------------


def assert_strict_tree(hypernodes: Mapping[str, HyperNode] | Offline | Applied) -> None:
    """Fail with every strict-tree problem named: one home per node, one parent per HyperNode, no
    missing child, parents above children."""
    if isinstance(hypernodes, Offline | Applied):
        hypernodes = hypernodes.hypernodes
    problems = tree_problems(hypernodes)
    if problems:
        raise AssertionError("not a strict tree:\n" + "\n".join(f"  {p}" for p in problems))


def assert_no_problems(result: Offline | Applied) -> None:
    """Fail with every problem an offline run found, or every reply a cluster run got."""
    found = [str(p) for p in result.problems] if isinstance(result, Offline) else [str(r.error) for r in result.replies]
    if isinstance(result, Applied):
        found += [f"provider raised {f}" for f in result.failures]
    if found:
        raise AssertionError("problems:\n" + "\n".join(f"  {p}" for p in found))


__all__ = [
    "BUILD_HINT",
    "Applied",
    "ControlPlaneUnavailable",
    "Offline",
    "apply_provider",
    "assert_no_problems",
    "assert_strict_tree",
    "discover_provider",
    "run_offline",
    "run_on_cluster",
    "start_control_plane",
]
