"""``volcano-topology run``: the kopf operator around the controller.

kopf runs the process: login, startup and cleanup handlers, signals. It watches no resource:
its per-object machinery (an event queue and worker per object) was measured to dominate the
operator's CPU on a large fabric and never to finish listing 16,384 Nodes. HyperNodes and
Nodes are kept instead by plain LIST + WATCH caches of the controller
(:class:`~volcano_topology.hypernodecache.HyperNodeCache`, always;
:class:`~volcano_topology.nodewatch.NodeCache`, names and labels only, when the configuration
needs Nodes), so kopf never adds an annotation or finalizer to anything. The controller runs
as a task started from the startup handler; a ``coordination.k8s.io`` Lease decides which
replica runs providers and writes (kopf's peering only pauses watches, it is not leader
election).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import kopf

from volcano_topology import kube
from volcano_topology.config import ConfigError, Configuration, parse_configuration
from volcano_topology.controller import ConfigSource, Controller
from volcano_topology.fencecheck import check_fence
from volcano_topology.kube import ClusterClient
from volcano_topology.leader import LeaderElector
from volcano_topology.observability import HealthPortUnavailable, HealthServer

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    source: ConfigSource
    kubeconfig: str | None = None
    dry_run: bool = False
    provider_paths: tuple[str, ...] = ()
    health_port: int = 8080
    health_address: str = "0.0.0.0"  # probes come from the kubelet, not from inside the pod
    poll: float = 5.0
    drain: float = 10.0
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")


@dataclass
class Runtime:
    options: RunOptions
    controller: Controller
    elector: LeaderElector | None
    health: HealthServer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def is_leader(self) -> bool:
        return self.elector.is_leader() if self.elector is not None else self.controller.leading

    def caches_synced(self) -> bool:
        """HyperNodes listed, and the Node view listed when Nodes are watched."""
        nodes = self.controller.nodes
        return self.controller.hypernodes.synced() and (not nodes.started or nodes.synced())


def initial_configuration(source: ConfigSource, cluster: ClusterClient) -> Configuration:
    """Read once before starting, to choose what to watch; an unreadable one starts with defaults."""

    async def read() -> Configuration:
        text, _ = await source.read(cluster)
        return parse_configuration(text)

    try:
        return asyncio.run(read())
    except (ConfigError, OSError, kube.KubeError) as exc:
        log.error("configuration not usable yet (%s); starting with defaults and retrying", exc)
        return Configuration()


def connection_info(api: Any) -> kopf.ConnectionInfo:
    """kopf's connection from the official client's configuration: one identity, one kubeconfig reading."""
    config = api.configuration
    keys = config.api_key or {}
    # kubernetes 37 keeps the token under "BearerToken"; older clients under "authorization".
    token = str(keys.get("BearerToken") or keys.get("authorization") or "").removeprefix("Bearer").strip()
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme="Bearer" if token else None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def run(options: RunOptions) -> int:
    if options.kubeconfig:
        os.environ["KUBECONFIG"] = str(options.kubeconfig)  # for kopf's login as well as ours
    config = initial_configuration(options.source, ClusterClient(kube.api_client(options.kubeconfig)))
    # Every request thread keeps a connection: spec writes and status writes (concurrency each), the two
    # watches, the lease and the other cluster requests. A smaller pool drops connections and opens new
    # ones, each a TLS handshake on both sides.
    api = kube.api_client(options.kubeconfig, pool_size=2 * config.operator.concurrency + 12)
    registry = build_registry()
    # exit_grace: once shut down, the process ends within this many seconds whatever a provider left running.
    memo = kopf.Memo(options=options, api=api, config=config, exit_grace=10.0)
    code = 0
    try:
        run_to_the_end(
            kopf.operator(registry=registry, clusterwide=True, standalone=True, memo=memo)  # kopf: SIGTERM/SIGINT
        )
    except Exception as exc:
        if not _caused_by(exc, HealthPortUnavailable):
            raise
        code = 1  # already logged, naming the address and port; kopf's wrapping adds nothing
    return code


def run_to_the_end(main: Coroutine[Any, Any, Any], grace: float = 5.0) -> None:
    """``asyncio.run``, except that a provider's misbehaviour cannot hold up the exit.

    ``asyncio.run`` waits without limit for every task left over to finish cancelling (a provider
    that swallows ``CancelledError`` never does) and joins every thread of the default executor
    (a provider whose ``asyncio.to_thread`` call hangs never returns). Here the leftovers get
    ``grace`` seconds, and the default executor is not joined.
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                _, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=grace))
                for task in pending:
                    log.error("task %s did not end %.0fs after it was cancelled; exiting without it",
                              task.get_name(), grace)  # fmt: skip
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), grace))
        except (TimeoutError, RuntimeError):
            log.error("asynchronous generators did not close within %.0fs; exiting without them", grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def exit_within(grace: float, code: int) -> None:
    """The process ends at most ``grace`` seconds from now, whatever a provider left running.

    kopf waits without limit for the tasks it cancels at exit (a provider that swallows
    ``CancelledError`` never ends), and Python joins every executor thread without a timeout (a
    provider's scan or ``to_thread`` call that hangs never returns). The operator has finished
    shutting down (lease released, writes drained) before this is called, so nothing of ours is
    lost by leaving; a normal exit takes well under a second and never reaches the watchdog.
    """

    def watchdog() -> None:
        time.sleep(grace)
        stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        log.error("exiting %.0fs after shutdown with thread(s) still running: %s", grace, ", ".join(stuck[:5]))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__
    return False


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
        return connection_info(memo.api)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.enabled = False  # our handlers only watch; kopf must not post Events of its own
        # kopf would list CRDs to find resources: the operator knows its two and is not allowed to read CRDs.
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        memo.runtime = await start_runtime(memo.options, memo.api, memo.config)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        await stop_runtime(memo.runtime)
        if memo.get("exit_grace"):  # `run` only: `dev` still has its control plane to stop after this
            exit_within(memo.exit_grace, 0)

    return registry


async def start_runtime(options: RunOptions, api: Any, config: Configuration) -> Runtime:
    controller = Controller(
        api, options.source, poll=options.poll, dry_run=options.dry_run, provider_paths=options.provider_paths
    )
    health = HealthServer(
        controller, lambda: runtime.is_leader(), lambda: runtime.caches_synced(), options.health_port,
        host=options.health_address,
    )  # fmt: skip
    runtime = Runtime(options, controller, None, health)
    # Before anything campaigns or writes: a port in use is a configuration error, not worth retrying.
    try:
        await health.start()
    except HealthPortUnavailable as exc:
        log.error("%s; exiting", exc.strerror)
        raise kopf.PermanentError(exc.strerror) from exc
    election = config.operator.leader_election
    if election.enabled:
        namespace = election.namespace or os.environ.get("POD_NAMESPACE") or options.source.namespace or "default"
        # A client of its own (its own threads): nothing else the process does can delay a renewal.
        lease_client = ClusterClient(
            api, timeout=max(1.0, election.renew_deadline / 3), concurrency=2, name="lease-requests"
        )
        runtime.elector = LeaderElector(
            lease_client, namespace, election.lease_name, options.identity,
            request_timeout=config.operator.request_timeout, lease_duration=election.lease_duration,
            renew_deadline=election.renew_deadline, retry_period=election.retry_period,
            on_started_leading=controller.start_leading, on_stopped_leading=controller.stop_leading,
        )  # fmt: skip
        controller.gate, controller.term = runtime.elector.is_leader, runtime.elector.term
        lease_name, identity = election.lease_name, options.identity
        controller.fence_check = lambda: check_fence(controller.cluster, namespace, lease_name, identity)
        health.add_liveness_check("leader election renewing", runtime.elector.renewing)
        runtime.tasks.append(asyncio.create_task(runtime.elector.run(), name="leader-election"))
    else:
        await controller.start_leading()
    health.add_liveness_check("writers not stuck", controller.writers_alive)
    runtime.tasks.append(asyncio.create_task(controller.run(), name="controller"))
    log.warning("volcano-topology %s started (%s); configuration from %s", options.identity,
                "leader election on" if runtime.elector else "no leader election", options.source)  # fmt: skip
    return runtime


async def stop_runtime(runtime: Runtime) -> None:
    log.warning("stopping: providers first, then queued writes for up to %.0fs", runtime.options.drain)
    controller_task = next(t for t in runtime.tasks if t.get_name() == "controller")
    controller_task.cancel()
    await asyncio.gather(controller_task, return_exceptions=True)
    await runtime.controller.shutdown(drain=runtime.options.drain)
    if runtime.elector is not None:
        await runtime.elector.release()
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.health.stop()
    log.warning("stopped")
