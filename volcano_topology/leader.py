"""Leader election over a ``coordination.k8s.io`` Lease, with client-go's semantics.

The leader renews every ``retry_period``. It stops leading as soon as it has not renewed for
``renew_deadline`` — before any other candidate may take over, which needs the lease
unrenewed for ``lease_duration`` (> ``renew_deadline``) as that candidate observed it. Expiry
is judged on each candidate's own monotonic clock from when it last saw the record change,
never by comparing wall clocks across machines. Every write is conditional on the Lease's
``resourceVersion``, so two candidates never both win. ``is_leader()`` is the fence the
writer checks before every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from volcano_topology.kube import ClusterClient, KubeError

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        cluster: ClusterClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
    ) -> None:
        self.cluster, self.namespace, self.name, self.identity = cluster, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self.leading = False
        self.holder: str | None = None
        self.transitions = 0
        self._last_renew = 0.0
        self._observed_version: str | None = None
        self._observed_at = 0.0

    def is_leader(self) -> bool:
        return self.leading and time.monotonic() - self._last_renew < self.renew_deadline

    async def run(self) -> None:
        """Campaign and renew until cancelled; calls the callbacks on every change of leadership."""
        try:
            while True:
                renewed = await self._try_acquire_or_renew()
                now = time.monotonic()
                if renewed:
                    self._last_renew = now
                    if not self.leading:
                        self.leading = True
                        log.warning("lease %s/%s: %s is now the leader", self.namespace, self.name, self.identity)
                        if self.on_started_leading:
                            await self.on_started_leading()
                elif self.leading and now - self._last_renew >= self.renew_deadline:
                    await self._step_down("could not renew within the renew deadline")
                await asyncio.sleep(self.retry_period)
        finally:
            if self.leading:
                await self._step_down("stopping")

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown) so a standby takes over at once, not after it expires."""
        if not self.leading:
            return
        await self._step_down("released")
        with contextlib.suppress(KubeError):
            lease = await self.cluster.get_lease(self.namespace, self.name)
            if lease and lease["spec"].get("holderIdentity") == self.identity:
                lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1, renewTime=micro_time())
                await self.cluster.replace_lease(self.namespace, self.name, lease)

    async def _step_down(self, why: str) -> None:
        self.leading = False
        log.warning("lease %s/%s: %s stops leading (%s)", self.namespace, self.name, self.identity, why)
        if self.on_stopped_leading:
            await self.on_stopped_leading()

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.cluster.get_lease(self.namespace, self.name)
            if lease is None:
                await self.cluster.create_lease(self.namespace, self._lease(None))
                self.transitions, self.holder = 0, self.identity
                return True
            spec: dict[str, Any] = lease.get("spec") or {}
            version = lease["metadata"]["resourceVersion"]
            if version != self._observed_version:
                self._observed_version, self._observed_at = version, time.monotonic()
            self.holder = spec.get("holderIdentity")
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            held_by_other = bool(self.holder) and self.holder != self.identity
            if held_by_other and time.monotonic() < self._observed_at + duration:
                return False
            body = self._lease(lease)
            await self.cluster.replace_lease(self.namespace, self.name, body)
            self.holder = self.identity
            return True
        except KubeError as exc:
            if exc.status != 409:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def _lease(self, current: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time()
        spec: dict[str, Any] = dict((current or {}).get("spec") or {})
        taking_over = spec.get("holderIdentity") != self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if current is not None and taking_over else 0)
        self.transitions = transitions
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=round(self.lease_duration),
            renewTime=now,
            leaseTransitions=transitions,
        )
        if taking_over or "acquireTime" not in spec:
            spec["acquireTime"] = now
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
