"""The only module that talks to the Kubernetes API server.

Clients are built with the official client's own retries off: retrying is the
writer's job (one tenacity layer), and stacked retries would multiply.

The official client is synchronous, so every request runs in a worker thread. Each
:class:`HyperNodeClient` and :class:`ClusterClient` has a thread pool of its own, sized to
its concurrency, never asyncio's default executor: hung work elsewhere (a blocking provider
scan, a slow file read) cannot take the threads that renew the leader Lease or write
HyperNodes, and one client's slow requests cannot starve another's.

Each request is bounded in total by the client's ``timeout``: urllib3's ``Timeout(total=...)``
(what the official client builds from ``_request_timeout=<float>``) bounds connecting and each
single socket read, not the whole exchange (a server that answers slowly byte by byte
can hold a request far longer), so the caller also stops waiting after ``timeout`` and
the request is abandoned. An abandoned request's thread runs on until urllib3 gives up;
its bytes may already be on the wire, so the server may still act on it later — which is
why writes that must not land late are conditional on ``resourceVersion``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import email.utils
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportFailure
from urllib3.response import BaseHTTPResponse

from volcano_topology import fence
from volcano_topology.api import GROUP, PLURAL, VERSION

CRD_FILE = "hypernodes.topology.volcano.sh.yaml"
CRD_NAME = f"{PLURAL}.{GROUP}"
FIELD_MANAGER = "volcano-topology"


def api_client(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None, *, pool_size: int = 16
) -> client.ApiClient:
    """From ``kubeconfig`` (or ``$KUBECONFIG``/``~/.kube/config``), else the in-cluster ServiceAccount."""
    configuration = client.Configuration()
    # At least as many pooled connections as concurrent requests, or urllib3 opens and drops extras.
    configuration.connection_pool_maxsize = pool_size
    path = kubeconfig or os.environ.get("KUBECONFIG")
    default = Path.home() / ".kube" / "config"
    if path is None and not default.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path) if path else None, context=context, client_configuration=configuration
        )
    configuration.retries = False  # urllib3 would otherwise retry connection errors three times on its own
    return client.ApiClient(configuration)


def crd_manifest() -> dict[str, Any]:
    """The HyperNode CRD: packaged with the wheel, or ``crds/`` beside the source in a checkout."""
    packaged = resources.files("volcano_topology").joinpath("data", CRD_FILE)
    if packaged.is_file():
        text = packaged.read_text()
    else:
        text = (Path(__file__).resolve().parent.parent / "crds" / CRD_FILE).read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def apply_crd(api: client.ApiClient, timeout: float = 30.0) -> None:
    """Server-side apply the HyperNode CRD and wait until it is Established."""
    extensions = client.ApiextensionsV1Api(api)
    extensions.patch_custom_resource_definition(
        CRD_NAME,
        crd_manifest(),
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition(CRD_NAME)
        conditions = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise TimeoutError(f"CRD {CRD_NAME} not Established within {timeout:.0f}s")


class KubeError(Exception):
    """A failed request: ``status`` is the HTTP status, 0 for transport failures (reset, timeout, refused)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}" if status else f"transport: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_exception(cls, exc: BaseException) -> KubeError:
        if isinstance(exc, ApiException):
            status = int(exc.status or 0)
            reason, message, retry_after = str(exc.reason or ""), str(exc.reason or ""), None
            try:
                body = json.loads(exc.body) if exc.body else {}
            except (TypeError, ValueError):
                body = {}
            if isinstance(body, dict):
                reason = str(body.get("reason") or reason)
                message = str(body.get("message") or message)
                details = body.get("details") or {}
                if isinstance(details, dict) and details.get("retryAfterSeconds"):
                    retry_after = float(details["retryAfterSeconds"])
            header = (exc.headers or {}).get("Retry-After") if exc.headers else None
            if header:
                retry_after = _parse_retry_after(str(header)) or retry_after
            return cls(status, reason, message, retry_after)
        return cls(0, type(exc).__name__, str(exc) or type(exc).__name__)


class RequestAbandoned(KubeError):
    """The caller stopped waiting after the client's timeout. ``started``: whether a worker thread had
    begun sending it (if not, every thread of the client was busy the whole time, and it was never sent)."""

    def __init__(self, timeout: float, started: bool) -> None:
        where = "in flight" if started else "still waiting for a free worker thread (never sent)"
        super().__init__(0, "Timeout", f"no complete answer within {timeout:g}s; abandoned {where}")
        self.started = started


class NotLeading(Exception):
    """The request was not sent: the client's gate was closed when a worker thread was about to send it."""


Gate = Callable[[], bool]
# The current leader term, read right after the gate check; None when not leading (volcano_topology.fence).
Term = Callable[[], str | None]


class _Requests:
    """Blocking requests on a thread pool of their own, each bounded in total by ``timeout``.

    ``gate`` (optional) is called in the worker thread immediately before the request is sent:
    when it is closed the request is not sent and :class:`NotLeading` is raised. Checking it
    there, not only before queueing, covers the time a request waited for a free thread.
    """

    def __init__(self, workers: int, timeout: float, name: str) -> None:
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def send(self, gate: Gate | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        timeout = self.timeout
        started = False

        def request() -> Any:
            nonlocal started
            started = True
            if gate is not None and not gate():
                raise NotLeading("the gate closed before the request was sent")
            result = fn(*args, _request_timeout=timeout, **kwargs)
            if isinstance(result, BaseHTTPResponse):
                _ = result.data  # with _preload_content=False: read the body here, not on the event loop
            return result

        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(self.pool, context.run, request)
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
        finally:
            if not future.done():
                future.cancel()  # one still waiting for a thread is then never sent
        if not done:
            raise RequestAbandoned(timeout, started)
        try:
            return future.result()
        except (ApiException, TransportFailure, OSError) as exc:
            raise KubeError.from_exception(exc) from exc

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _parse_retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class HyperNodeClient:
    """Async HyperNode requests over the synchronous official client.

    Requests run on this client's own ``concurrency`` worker threads, at most ``concurrency``
    at a time (keep it at or below the connection pool size), each bounded in total by
    ``timeout`` (see the module docstring). Every failure surfaces as ``KubeError``; nothing
    is retried here. ``requests`` counts calls by verb, including those the gate then stopped.

    ``gate`` (optional, e.g. the leader elector's ``is_leader``) is checked in the worker
    thread right before each request is sent; a closed gate raises :class:`NotLeading`
    and nothing is sent. With the elector's rules, a request sent while the gate is open is
    answered or abandoned client-side before the lease can expire for other candidates.

    ``term`` (optional, e.g. the elector's ``term``): every ``apply(..., create=True)`` is sent
    with the term read in the worker thread right after the gate check, in
    :data:`volcano_topology.fence.TERM_ANNOTATION`, for the server's writer fence; when it
    returns None the create is not sent (:class:`NotLeading`).
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        concurrency: int = 8,
        timeout: float = 10.0,
        gate: Gate | None = None,
        term: Term | None = None,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._limit = asyncio.Semaphore(concurrency)
        self._requests = _Requests(concurrency, timeout, "hypernode-requests")
        self.gate = gate
        self.term = term
        self.requests: collections.Counter[str] = collections.Counter()

    @property
    def timeout(self) -> float:
        return self._requests.timeout

    def close(self) -> None:
        """Stop this client's worker threads once their current requests end."""
        self._requests.close()

    async def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._limit:
            self.requests[verb] += 1
            return await self._requests.send(self.gate, fn, *args, **kwargs)

    async def list(self, label_selector: str | None = None, page_size: int = 500) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._call(
                "list", self._objects.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                label_selector=label_selector, limit=page_size, _continue=token,
            )  # fmt: skip
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def get(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(
                "get", self._objects.get_cluster_custom_object, GROUP, VERSION, PLURAL, name
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def apply(self, body: dict[str, Any], manager: str, *, force: bool, create: bool = False) -> dict[str, Any]:
        """Server-side apply (creates the object when missing).

        A ``metadata.resourceVersion`` in ``body`` makes it conditional (409 when stale).
        Without ``force``, a field another manager set to a different value is a 409 conflict.
        ``create``: meant to create the object, so sent with the leader term (see the class docstring).
        """
        send: Callable[..., Any] = self._objects.patch_cluster_custom_object
        term = self.term
        if create and term is not None:
            patch = send

            def send(group: str, version: str, plural: str, name: str, unstamped: Any, **kwargs: Any) -> Any:
                current = term()  # in the worker thread, right after the gate check: the term it is sent in
                if current is None:
                    raise NotLeading("no leader term when the create was about to be sent")
                return patch(group, version, plural, name, fence.stamped(unstamped, current), **kwargs)

        # Raw content: the generated client maps only 200 to a body, so a create (201) would come back empty.
        response = await self._call(
            "apply", send, GROUP, VERSION, PLURAL, body["metadata"]["name"], body, field_manager=manager,
            force=force, _content_type="application/apply-patch+yaml", _preload_content=False,
        )  # fmt: skip
        applied: dict[str, Any] = json.loads(response.data) if response.data else {}
        return applied

    async def delete(self, name: str, uid: str, resource_version: str) -> bool:
        """Delete only the exact object observed (409 when it changed). False when it was already gone."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid, resource_version=resource_version)
        )
        try:
            await self._call(
                "delete", self._objects.delete_cluster_custom_object, GROUP, VERSION, PLURAL, name, body=options
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True


class ClusterClient:
    """Async access to what the operator reads or writes besides HyperNode specs: Leases, ConfigMaps,
    Secrets, Events, HyperNode status. Same conventions as HyperNodeClient (``KubeError``, no retries,
    each request bounded in total by ``timeout``), on ``concurrency`` worker threads of its own;
    more concurrent calls wait for a free thread (their timeout runs while they wait)."""

    def __init__(
        self, api: client.ApiClient, *, timeout: float = 10.0, concurrency: int = 4, name: str = "cluster-requests"
    ) -> None:
        self.api = api
        self._core = client.CoreV1Api(api)
        self._coordination = client.CoordinationV1Api(api)
        self._objects = client.CustomObjectsApi(api)
        self._requests = _Requests(concurrency, timeout, name)

    @property
    def timeout(self) -> float:
        return self._requests.timeout

    def close(self) -> None:
        """Stop this client's worker threads once their current requests end."""
        self._requests.close()

    async def _call(self, fn: Callable[..., Any], *args: Any, gate: Gate | None = None, **kwargs: Any) -> Any:
        result = await self._requests.send(gate, fn, *args, **kwargs)
        return result if isinstance(result, dict) else self.api.sanitize_for_serialization(result)  # type: ignore[no-untyped-call]

    async def _get(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(fn, *args)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def dry_run_create_hypernode(self, body: dict[str, Any]) -> None:
        """Create ``body`` as a server-side dry run (admission runs, nothing is stored); KubeError when refused."""
        await self._call(self._objects.create_cluster_custom_object, GROUP, VERSION, PLURAL, body, dry_run="All")

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(self._coordination.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._call(self._coordination.create_namespaced_lease, namespace, body)
        return created

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Needs ``metadata.resourceVersion``: a stale one is a 409, which is how two candidates never both win."""
        replaced: dict[str, Any] = await self._call(self._coordination.replace_namespaced_lease, name, namespace, body)
        return replaced

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(self._core.read_namespaced_config_map, name, namespace)

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(self._core.read_namespaced_secret, name, namespace)

    async def list_nodes(self) -> dict[str, dict[str, str]]:
        nodes: dict[str, Any] = await self._call(self._core.list_node)
        return {n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in nodes.get("items") or []}

    async def post_event(
        self, involved: dict[str, str], reason: str, message: str, *, warning: bool = True, namespace: str = "default"
    ) -> None:
        """A core/v1 Event about ``involved`` (kind, name, apiVersion, optional namespace and uid)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ns = involved.get("namespace") or namespace
        body = {
            "metadata": {"generateName": f"{involved['name'][:40]}.", "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": FIELD_MANAGER},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call(self._core.create_namespaced_event, ns, body)

    async def apply_hypernode_status(
        self,
        name: str,
        status: dict[str, Any],
        manager: str,
        *,
        resource_version: str | None = None,
        gate: Gate | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of the fields of ``status`` this manager owns (through the /status subresource).

        With ``resource_version`` the write is conditional: the server answers 409 (``KubeError``
        status 409, reason ``Conflict``) when the object has changed since that version. ``gate``
        is checked right before sending, as in :class:`HyperNodeClient` (:class:`NotLeading`).
        """
        metadata: dict[str, Any] = {"name": name}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HyperNode", "metadata": metadata, "status": status}
        response = await self._call(
            self._objects.patch_cluster_custom_object_status, GROUP, VERSION, PLURAL, name, body,
            field_manager=manager, force=True, _content_type="application/apply-patch+yaml", gate=gate,
        )  # fmt: skip
        answer: dict[str, Any] = response or {}
        return answer  # the object as written: its new resourceVersion
