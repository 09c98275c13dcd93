"""The operator's core loop: configuration in, supervised providers and status out.

Level-triggered: every ``poll`` seconds (or sooner when poked) it reads the configuration
and the Secrets it references, and makes the running providers match:

- a provider whose entry (or Secret data, or the operator settings) changed is restarted;
  the others are left alone;
- an entry that fails to validate (unknown provider, bad ``config``) keeps its last good
  version running; the error is logged and posted as a Kubernetes Event;
- a configuration that cannot be parsed at all changes nothing;
- a provider removed from the list is stopped and, unless ``removedProviders: delete``,
  its HyperNodes are kept.

Providers and writes run only while this replica leads (``start_leading``/``stop_leading``).
Every replica keeps the watch-fed HyperNode cache (so a standby that takes over starts from
a warm view); the writer and the status writer read it instead of listing. A HyperNode of a
running provider that the watch shows changed or deleted is handed to that provider's writer
to reconcile by name (drift repair). Status (the ``Synced`` condition, and ``nodeCount`` when
enabled) is written only to HyperNodes owned by a provider this operator runs, only when it
differs, under a status field manager of its own (``volcano-topology/<provider>/status``),
and conditional on the resourceVersion it was computed from (see ``statuswriter``).

Coexistence with Volcano: Volcano's controller runs its built-in discoverers for every
enabled entry of its own ConfigMap and deletes the HyperNodes of that source it did not
discover itself. A source Volcano runs (``operator.volcano``: its ConfigMap and built-in
sources) is never run here: it is reported in the log, as an Event and in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from volcano_topology import registry
from volcano_topology.config import ConfigError, Configuration, DiscoveryEntry, parse_configuration
from volcano_topology.fencecheck import FenceState
from volcano_topology.hypernodecache import HyperNodeCache, Seen
from volcano_topology.kube import ClusterClient, HyperNodeClient, KubeError, Term
from volcano_topology.nodewatch import NodeCache
from volcano_topology.plan import DeletionGuard
from volcano_topology.provider import Event
from volcano_topology.retries import RetryPolicy
from volcano_topology.runner import ProviderRun
from volcano_topology.status import SyncState
from volcano_topology.statuswriter import StatusScope, StatusWriter
from volcano_topology.writer import ProviderStats, Writer, WriterSettings

log = logging.getLogger(__name__)


_CONFIG_READER = ThreadPoolExecutor(1, thread_name_prefix="config-read")
FENCE_CHECK_EVERY = 60.0  # seconds; a reinstall or an API-server restart can change the answer


@dataclass(frozen=True)
class ConfigSource:
    """Where the configuration lives: a file, or a key of a ConfigMap (the first key when unnamed)."""

    file: Path | None = None
    namespace: str | None = None
    name: str | None = None
    key: str | None = None

    @classmethod
    def parse(cls, file: str | None, config_map: str | None) -> ConfigSource:
        if file:
            return cls(file=Path(file))
        if config_map:
            ref, _, key = config_map.partition(":")
            namespace, _, name = ref.rpartition("/")
            return cls(namespace=namespace or "default", name=name, key=key or None)
        raise ConfigError(["give --config FILE or --config-map NAMESPACE/NAME[:KEY]"])

    def __str__(self) -> str:
        if self.file is not None:
            return str(self.file)
        return f"ConfigMap {self.namespace}/{self.name}" + (f" key {self.key}" if self.key else "")

    async def read(self, cluster: ClusterClient) -> tuple[str, str]:
        """The text and a version that changes whenever the text may have."""
        if self.file is not None:
            # A thread of its own: the default executor is shared with providers, and one that pins its
            # threads must not stop configuration reloads.
            text = await asyncio.get_running_loop().run_in_executor(_CONFIG_READER, self.file.read_text)
            return text, hashlib.sha256(text.encode()).hexdigest()
        assert self.namespace is not None and self.name is not None
        found = await cluster.get_config_map(self.namespace, self.name)
        if found is None:
            raise ConfigError([f"{self}: not found"])
        data: dict[str, str] = found.get("data") or {}
        key = self.key or next(iter(sorted(data)), None)
        if key is None or key not in data:
            raise ConfigError([f"{self}: no key {key or '(any)'} in its data"])
        return data[key], found["metadata"]["resourceVersion"]

    def involved(self) -> dict[str, str] | None:
        if self.name is None:
            return None
        return {"kind": "ConfigMap", "apiVersion": "v1", "name": self.name, "namespace": self.namespace or "default"}


@dataclass
class Running:
    entry: DiscoveryEntry
    fingerprint: str
    run: ProviderRun


@dataclass
class Desired:
    entry: DiscoveryEntry
    loaded: registry.LoadedProvider
    credentials: dict[str, bytes] = field(repr=False)  # never in a log line or an error message
    fingerprint: str = ""


@dataclass
class ControllerState:
    config: Configuration | None = None
    config_version: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # source (or "(configuration)") -> problem
    desired: dict[str, Desired] = field(default_factory=dict)
    reloads: int = 0
    config_errors_total: int = 0


class Controller:
    def __init__(
        self,
        api: client.ApiClient,
        source: ConfigSource,
        *,
        poll: float = 5.0,
        dry_run: bool = False,
        provider_paths: tuple[str, ...] = (),
    ) -> None:
        self.api = api
        self.source = source
        self.poll = poll
        self.dry_run = dry_run
        self.provider_paths = provider_paths
        # Started when the configuration needs Nodes (nodeCount, or a provider with needs_nodes), never before:
        # an operator that needs no Node is not given the right to list them.
        self.nodes = NodeCache(api)
        self._node_pokes: asyncio.Task[None] | None = None
        # Every HyperNode, from one LIST and a WATCH: what the writer plans from and status is computed from.
        self.hypernodes = HyperNodeCache(api)
        self.hypernodes.subscribe(self._hypernode_changed)
        self.cluster = ClusterClient(api)
        self._status_client: tuple[float, int, ClusterClient] | None = None
        self.status = StatusWriter(
            self.hypernodes, self.nodes, self.cluster, self._status_scope, notify=self._notify
        )  # the client is replaced by one sized from the configuration (``_status_writer_for``)
        self.hypernodes.subscribe(self.status.seen)
        self._status_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._provider_stats: dict[str, ProviderStats] = {}  # outlive each writer: counters never go down
        self._cleanup: set[str] = set()  # removed providers whose HyperNodes still have to be deleted
        self.state = ControllerState()
        self.runs: dict[str, Running] = {}
        self.writer: Writer | None = None
        self.leading = False
        self.terms = 0  # terms as leader this process began (without leader election: the one, at start)
        self.gate: Callable[[], bool] = lambda: self.leading
        # The leader term each create is sent with (the elector's term); None without leader election.
        self.term: Term | None = None
        # With leader election: whether the API server's writer fence is in force, checked while leading.
        self.fence_check: Callable[[], Awaitable[FenceState]] | None = None
        self.fence_state = FenceState.UNKNOWN
        self._fence_task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._lock = asyncio.Lock()
        self._notified: dict[str, str] = {}
        self.config_loaded = asyncio.Event()
        self.providers_started = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    def poke(self) -> None:
        self._poke.set()

    async def run(self) -> None:
        self.hypernodes.start()
        self._status_task = asyncio.create_task(self.status.run(), name="status")
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("controller step failed; trying again in %.0fs", self.poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.poll)
            self._poke.clear()

    async def step(self) -> None:
        async with self._lock:
            await self._reconcile_config()
            self._watch_nodes_if_needed()
            if self.leading:
                await self._reconcile_providers()
                self._status_writer_for()
                self.status.dirty(None)  # the level-triggered full pass; changes mark their names sooner

    async def start_leading(self) -> None:
        self.leading = True
        self.terms += 1
        self.poke()
        if self.fence_check is not None:
            if self._fence_task is not None:
                self._fence_task.cancel()
            self._fence_task = asyncio.create_task(self._check_fence_while_leading(), name="fence-check")

    async def _check_fence_while_leading(self) -> None:
        """At the start of each term and every ``FENCE_CHECK_EVERY`` seconds while leading: one dry-run request."""
        assert self.fence_check is not None
        while self.leading:
            try:
                self.fence_state = await self.fence_check()
            except Exception:
                log.exception("writer fence: the check failed")
                self.fence_state = FenceState.UNKNOWN
            await asyncio.sleep(FENCE_CHECK_EVERY)

    async def stop_leading(self) -> None:
        """Stop writing at once (the gate is already closed); providers are stopped in the background.

        Returns without waiting for the controller's lock, so the election loop that calls it
        keeps renewing (or campaigning) on time; the next leader starts from the cluster.
        """
        self.leading = False
        if self._fence_task is not None:
            self._fence_task.cancel()  # the next term checks at once, in a task of its own
        self._stopping = asyncio.create_task(self._stop_providers(), name="stop-leading")

    async def _stop_providers(self) -> None:
        async with self._lock:
            if self.leading:
                return  # leading again already: the next step reconciles the providers it has
            await asyncio.gather(*(r.run.stop(grace=1.0, drain=0.0) for r in self.runs.values()))
            self.runs.clear()
            self._replace_writer(None)
            self.providers_started.clear()

    async def shutdown(self, drain: float = 10.0) -> None:
        """SIGTERM: stop providers, let queued writes finish within ``drain`` seconds."""
        async with self._lock:
            await asyncio.gather(*(r.run.stop(grace=2.0, drain=drain) for r in self.runs.values()))
            self.runs.clear()
        self.nodes.stop()
        self.hypernodes.stop()
        for task in (self._node_pokes, self._status_task, self._fence_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def needs_nodes(self) -> list[str]:
        """What in the configuration needs the Node view (empty: nothing, so Nodes are never listed)."""
        config = self.state.config
        if config is None:
            return []
        needed = ["status.nodeCount"] if config.operator.status.node_count else []
        return needed + sorted(f"provider {s}" for s, d in self.state.desired.items() if d.loaded.cls.needs_nodes)

    def _watch_nodes_if_needed(self) -> None:
        if self.nodes.started or not (why := self.needs_nodes()):
            return
        self.nodes.start(", ".join(why))
        self._node_pokes = asyncio.create_task(self._poke_on_node_changes(), name="node-changes")

    async def _poke_on_node_changes(self) -> None:
        """nodeCount follows Nodes: only the HyperNodes whose selectors read what changed are recounted."""
        seen = 0
        while True:
            previous, seen = seen, await self.nodes.changed(seen)
            config = self.state.config
            if config is not None and config.operator.status.node_count:
                self.status.nodes_changed(self.nodes.changes_since(previous) if previous else None)

    def writer_problems(self) -> list[str]:
        """Writers with work waiting and no batch finished lately (readiness)."""
        return self.writer.problems() if self.writer is not None and self.leading else []

    def writers_alive(self) -> bool:
        """False while a writer has been inside one batch for too long (liveness: a restart is the cure)."""
        return self.writer is None or not self.writer.stuck()

    # -- configuration ---------------------------------------------------------------

    async def _reconcile_config(self) -> None:
        try:
            text, version = await self.source.read(self.cluster)
            config = parse_configuration(text)
        except (ConfigError, OSError, KubeError) as exc:
            await self._config_error("(configuration)", f"{self.source}: {exc} (keeping the last good configuration)")
            return
        self.state.errors.pop("(configuration)", None)
        desired: dict[str, Desired] = {}
        operator = json.dumps(config.operator.model_dump(mode="json"), sort_keys=True)
        volcano_runs = await self._volcano_sources(config, text, version)
        for source, entry in config.enabled().items():
            if source in volcano_runs:
                await self._config_error(source, volcano_runs[source])
                continue
            try:
                desired[source] = await self._resolve(entry, operator, config.operator.provider_paths)
                self.state.errors.pop(source, None)
            except (registry.ProviderConfigError, ConfigError, KubeError, ValueError) as exc:
                previous = self.state.desired.get(source)
                kept = " (keeping its last good configuration)" if previous else ""
                await self._config_error(source, f"{exc}{kept}")
                if previous is not None:
                    desired[source] = previous
        for gone in set(self.state.errors) - set(config.enabled()) - {"(configuration)", "(volcano)"}:
            self.state.errors.pop(gone, None)
        if version != self.state.config_version:
            self.state.reloads += 1
            log.info("configuration from %s: %d provider(s) enabled", self.source, len(desired))
        self.state.config, self.state.config_version, self.state.desired = config, version, desired
        self.config_loaded.set()

    async def _volcano_sources(self, config: Configuration, text: str, version: str) -> dict[str, str]:
        """Sources Volcano's own controller runs (source -> why it is not run here)."""
        volcano = config.operator.volcano
        builtin = set(volcano.builtin_sources)
        here = self.source.namespace == volcano.namespace and self.source.name == volcano.config_map
        if here:
            theirs, where = config, f"this ConfigMap ({self.source})"
        else:
            where = f"Volcano's ConfigMap {volcano.namespace}/{volcano.config_map}"
            try:
                found = await self.cluster.get_config_map(volcano.namespace, volcano.config_map)
            except KubeError as exc:
                if exc.status != 403:
                    log.warning("could not read %s: %s", where, exc)
                return {}
            if found is None:
                self.state.errors.pop("(volcano)", None)
                return {}
            data: dict[str, str] = found.get("data") or {}
            try:
                theirs = parse_configuration(data.get(volcano.key, ""))
                self.state.errors.pop("(volcano)", None)
            except ConfigError as exc:
                await self._config_error("(volcano)", f"{where}: {exc}; assuming it runs no source")
                return {}
        return {
            source: (
                f"provider {source!r} is not run: Volcano's controller runs its built-in {source!r} discovery for "
                f"the enabled entry in {where}, and two writers of one source delete each other's HyperNodes "
                "forever. Disable it there, or give this operator's entry another source name"
            )
            for source in theirs.enabled()
            if source in builtin and source in config.enabled()
        }

    async def _resolve(self, entry: DiscoveryEntry, operator: str, paths: list[str]) -> Desired:
        credentials = await self._credentials(entry)
        digest = hashlib.sha256(operator.encode() + repr(sorted(credentials.items())).encode()).hexdigest()
        fingerprint = entry.fingerprint(digest)
        previous = self.state.desired.get(entry.source)
        if previous is not None and previous.fingerprint == fingerprint:
            return previous  # unchanged: no need to import and validate it again
        loaded, errors = registry.load([entry.source], [*self.provider_paths, *paths])
        if errors:
            raise ConfigError([str(errors[0])])
        provider = loaded[entry.source]
        registry.instantiate(provider, entry.config)  # validates the config now, names the bad field
        return Desired(entry, provider, credentials, fingerprint)

    async def _credentials(self, entry: DiscoveryEntry) -> dict[str, bytes]:
        """The data of the entry's Secret, read every time so that a rotation restarts the provider."""
        if entry.credentials is None or entry.credentials.secret_ref is None:
            return {}
        ref = entry.credentials.secret_ref
        namespace = ref.namespace or self.source.namespace or "default"
        secret = await self.cluster.get_secret(namespace, ref.name)
        if secret is None:
            raise ConfigError([f"provider {entry.source!r}: credentials.secretRef {namespace}/{ref.name} not found"])
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def _config_error(self, source: str, message: str) -> None:
        if self.state.errors.get(source) == message:
            return  # already reported
        self.state.errors[source] = message
        self.state.config_errors_total += 1
        log.error("configuration error: %s", message)
        involved = self.source.involved()
        if involved is not None:
            try:
                await self.cluster.post_event(involved, "InvalidConfiguration", message)
            except KubeError as exc:
                log.warning("could not post an Event about the configuration: %s", exc)

    # -- providers -------------------------------------------------------------------

    def _replace_writer(self, writer: Writer | None) -> None:
        """Its providers are stopped already: the old writer's request threads can go."""
        if self.writer is not None:
            self.writer.close()
        self.writer = writer

    def _writer_for(self, config: Configuration) -> Writer:
        settings = config.operator
        # The gate is checked again in the worker thread right before each request is sent.
        kube = HyperNodeClient(
            self.api,
            concurrency=settings.concurrency,
            timeout=settings.request_timeout,
            gate=lambda: self.gate(),
            term=self.term,
        )
        return Writer(
            kube,
            WriterSettings(
                queue_size=settings.queue_size,
                retry=RetryPolicy(deadline=settings.retry_deadline),
                guard=DeletionGuard(settings.deletion_guard.max_delete_fraction, settings.deletion_guard.allow_empty),
                admission=settings.admission,
                dry_run=self.dry_run or settings.dry_run,
            ),
            gate=lambda: self.gate(),
            cache=self.hypernodes,
            on_mark=self.status.dirty,
            stats=self._provider_stats,
        )

    async def _reconcile_providers(self) -> None:
        config = self.state.config
        if config is None:
            return
        desired = self.state.desired
        for source in [s for s in self.runs if s not in desired or self.runs[s].fingerprint != desired[s].fingerprint]:
            running = self.runs.pop(source)
            log.warning(
                "provider %s: %s", source, "configuration changed, restarting" if source in desired else "removed"
            )
            await running.run.stop()
            if source not in desired and config.operator.removed_providers == "delete":
                self._cleanup.add(source)
        for source in sorted(self._cleanup - set(desired)):
            if await self._delete_all_of(source, config):
                self._cleanup.discard(source)
        if self.writer is None or not self.runs:  # first start, or every provider restarts (settings changed)
            self._replace_writer(self._writer_for(config))
        writer = self.writer
        assert writer is not None
        for source, want in desired.items():
            if source in self.runs:
                continue
            provider = registry.instantiate(want.loaded, want.entry.config)
            run = ProviderRun(
                source, provider, writer, interval=want.entry.interval,
                nodes=self.nodes if self.nodes.started else {}, credentials=want.credentials,
            )  # fmt: skip
            run.start()
            self.runs[source] = Running(want.entry, want.fingerprint, run)
            log.warning("provider %s: started", source)
        self.providers_started.set()

    async def _delete_all_of(self, source: str, config: Configuration) -> bool:
        """Delete a removed provider's HyperNodes; False (and retried at the next step) when that failed."""
        cleaner = self._writer_for(config)
        cleaner.settings = WriterSettings(guard=DeletionGuard(1.0, allow_empty=True), dry_run=cleaner.settings.dry_run)
        channel = cleaner.open(source)
        try:
            done = await cleaner.process(channel, [Event.snapshot([])])
        finally:
            cleaner.close()
        if done:
            log.warning("provider %s: removed from the configuration; its HyperNodes were deleted", source)
        else:
            log.error("provider %s: removed from the configuration; deleting its HyperNodes failed, will retry", source)
        return done

    # -- status ----------------------------------------------------------------------

    def _status_scope(self) -> StatusScope | None:
        """What the status writer may write now: nothing while not leading or in a dry run."""
        config = self.state.config
        if config is None or not self.leading or self.dry_run or config.operator.dry_run:
            return None
        wanted = config.operator.status
        # Only objects of providers running here: another operator's objects are not ours to describe.
        channels = [running.run.channel for running in self.runs.values()]
        sync = {channel.name: channel.sync for channel in channels}
        return StatusScope(
            wanted.conditions,
            wanted.node_count,
            sync,
            self.gate,
            busy=lambda n: any(n in c.writing or (c.planning and n in c.owned) for c in channels),
        )

    def _status_writer_for(self) -> None:
        """Status requests on threads of their own, as many as the writer's, with the writes' timeout."""
        config = self.state.config
        assert config is not None
        key = (config.operator.request_timeout, config.operator.concurrency)
        if self._status_client is None or self._status_client[:2] != key:
            if self._status_client is not None:
                self._status_client[2].close()
            status = ClusterClient(self.api, timeout=key[0], concurrency=key[1], name="status-requests")
            self._status_client = (*key, status)
            self.status.client, self.status.concurrency = status, key[1]

    def _hypernode_changed(self, seen: Seen, deleted: bool) -> None:
        """The watch brought a change to a HyperNode: its provider's writer reconciles it by name.

        The writer decides later, against the provider's latest desired state, whether this was
        drift at all: the echo of its own write or delete is not.
        """
        owner = seen.observed.owner
        if not self.leading or owner is None or owner not in self.runs:
            return
        self.runs[owner].run.channel.suspect(seen.observed.name, seen.resource_version, deleted=deleted)

    async def _notify(self, name: str, state: SyncState) -> None:
        """A Warning Event on a HyperNode that stopped being in sync (once per distinct problem)."""
        key = "" if state.synced else f"{state.reason}:{state.message}"
        if self._notified.get(name, "") == key:
            return
        self._notified[name] = key
        if state.synced:
            return
        involved = {"kind": "HyperNode", "apiVersion": "topology.volcano.sh/v1alpha1", "name": name}
        try:
            await self.cluster.post_event(involved, state.reason, state.message)
        except KubeError as exc:
            log.warning("could not post an Event about HyperNode %s: %s", name, exc)
