"""The only module that talks to the Kubernetes API server.

Clients are built with the official client's own retries off: retrying is the
writer's job (one tenacity layer), and stacked retries would multiply.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportFailure

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


def _parse_retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class HyperNodeClient:
    """Async HyperNode requests over the synchronous official client.

    Requests run in worker threads, at most ``concurrency`` at a time (keep it at or
    below the connection pool size). Every failure surfaces as ``KubeError``; nothing
    is retried here. ``requests`` counts requests sent, by verb.
    """

    def __init__(self, api: client.ApiClient, *, concurrency: int = 8, timeout: float = 10.0) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._limit = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self.requests: collections.Counter[str] = collections.Counter()

    async def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._limit:
            self.requests[verb] += 1
            try:
                return await asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs)
            except (ApiException, TransportFailure, OSError) as exc:
                raise KubeError.from_exception(exc) from exc

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

    async def apply(self, body: dict[str, Any], manager: str, *, force: bool) -> dict[str, Any]:
        """Server-side apply (creates the object when missing).

        A ``metadata.resourceVersion`` in ``body`` makes it conditional (409 when stale).
        Without ``force``, a field another manager set to a different value is a 409 conflict.
        """
        applied: dict[str, Any] = await self._call(
            "apply", self._objects.patch_cluster_custom_object, GROUP, VERSION, PLURAL, body["metadata"]["name"],
            body, field_manager=manager, force=force, _content_type="application/apply-patch+yaml",
        )  # fmt: skip
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
    Secrets, Events, HyperNode status. Same conventions as HyperNodeClient (``KubeError``, no retries)."""

    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api
        self._core = client.CoreV1Api(api)
        self._coordination = client.CoordinationV1Api(api)
        self._objects = client.CustomObjectsApi(api)
        self._timeout = timeout

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs)
        except (ApiException, TransportFailure, OSError) as exc:
            raise KubeError.from_exception(exc) from exc
        return result if isinstance(result, dict) else self.api.sanitize_for_serialization(result)  # type: ignore[no-untyped-call]

    async def _get(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(fn, *args)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return found

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

    async def apply_hypernode_status(self, name: str, status: dict[str, Any], manager: str) -> None:
        """Server-side apply of the fields of ``status`` this manager owns (through the /status subresource)."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HyperNode", "metadata": {"name": name}, "status": status}
        await self._call(
            self._objects.patch_cluster_custom_object_status, GROUP, VERSION, PLURAL, name, body,
            field_manager=manager, force=True, _content_type="application/apply-patch+yaml",
        )  # fmt: skip
