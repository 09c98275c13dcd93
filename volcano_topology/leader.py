"""Leader election over a ``coordination.k8s.io`` Lease, with client-go's semantics.

Timing rules (all on this process's monotonic clock):

- A renewal's time is taken *before* its request is sent; when the request succeeds, the
  lease counts as renewed at that send time. Another candidate times the lease from when it
  saw the renewed record, which is after the server applied it, so after that send time.
- Another candidate may take over only once the record has stayed unchanged for the
  record's ``leaseDurationSeconds`` (``lease_duration`` rounded up) on its own clock; wall
  clocks are never compared across machines. Every Lease write is conditional on the
  Lease's ``resourceVersion``, so of two candidates racing for an expired lease one gets a 409.
- :meth:`LeaderElector.is_leader`, the gate checked before every write request, is open only
  while ``now - renewed < renew_deadline`` and ``now - renewed + request_timeout <
  lease_duration``. A write request whose gate check passed right before it was sent
  (``HyperNodeClient(gate=...)`` checks in the worker thread, after any wait for a free
  slot) and that is bounded in total by ``request_timeout`` (as :mod:`volcano_topology.kube`
  does) is therefore answered or abandoned client-side before any other candidate may
  take the lease. A gate checked earlier than that, e.g. before waiting for a slot, does
  not give this guarantee.
  What this does not cover: bytes of an abandoned request already on the wire may still
  reach the server later. A late write that carries a ``resourceVersion`` (the writer's
  updates and deletes do) is rejected (409) when the object changed meanwhile, e.g. by the
  next leader; one that carries none (a create) is refused by the API server's writer fence
  when it is installed (:mod:`volcano_topology.fence`: each create carries :meth:`term`).
- The leader steps down (``on_stopped_leading``) as soon as it has not renewed for
  ``renew_deadline``; each attempt is cut off at that deadline rather than waited for.

:meth:`LeaderElector.renewing` is a liveness check: false when the loop has not completed
an attempt for longer than ``lease_duration`` while it should be running, or died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from volcano_topology import fence
from volcano_topology.kube import ClusterClient, KubeError, RequestAbandoned

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]
Clock = Callable[[], float]


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_timings(lease_duration: float, renew_deadline: float, retry_period: float, request_timeout: float) -> None:
    """Raise ``ValueError`` unless ``retry_period < renew_deadline`` and ``renew_deadline + request_timeout <
    lease_duration`` (otherwise a write sent just before the renew deadline could outlive the lease)."""
    if not 0 < retry_period < renew_deadline:
        raise ValueError(
            f"leader election needs 0 < retryPeriod < renewDeadline (retryPeriod {retry_period:g}s, "
            f"renewDeadline {renew_deadline:g}s)"
        )
    if not renew_deadline + request_timeout < lease_duration:
        raise ValueError(
            f"leader election needs renewDeadline + requestTimeout < leaseDuration (renewDeadline "
            f"{renew_deadline:g}s + requestTimeout {request_timeout:g}s = {renew_deadline + request_timeout:g}s, "
            f"leaseDuration {lease_duration:g}s)"
        )


class LeaderElector:
    def __init__(
        self,
        cluster: ClusterClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        request_timeout: float,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``request_timeout``: the total timeout of the write requests this elector's gate guards."""
        check_timings(lease_duration, renew_deadline, retry_period, request_timeout)
        self.cluster, self.namespace, self.name, self.identity = cluster, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.request_timeout = request_timeout
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self.clock = clock
        self.leading = False
        self.holder: str | None = None
        self.transitions = 0
        self.renewals = 0
        self._renewed_at = -math.inf  # send time of the last renewal that succeeded
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._state = "idle"  # idle, running, stopped (cancelled) or crashed
        self._attempt_done_at = 0.0
        self._stalled = False

    def is_leader(self) -> bool:
        """The write gate; safe to call from any thread (it only reads)."""
        return self.leading and self._within_term(self.clock())

    def term(self) -> str | None:
        """This replica's leader term as the Lease has it (``namespace/name/holderIdentity/leaseTransitions``),
        None when not leading: what each create is sent with, for the API server's writer fence
        (:mod:`volcano_topology.fence`). Safe to call from any thread."""
        return fence.term(self.namespace, self.name, self.identity, self.transitions) if self.is_leader() else None

    def _within_term(self, now: float) -> bool:
        age = now - self._renewed_at
        return age < self.renew_deadline and age + self.request_timeout < self.lease_duration

    def renewing(self) -> bool:
        """Liveness: false when ``run()`` crashed, or is running but completed no attempt within ``lease_duration``.

        An attempt counts as completed when it got an answer or failed by itself (a request timing
        out in flight included). It does not when the loop cut it off at the renew deadline, or when
        one of its requests never got a worker thread of the elector's client (all of them hung).
        """
        if self._state == "crashed":
            return False
        return self._state != "running" or self.clock() - self._attempt_done_at <= self.lease_duration

    async def run(self) -> None:
        """Campaign and renew until cancelled; calls the callbacks on every change of leadership."""
        self._state, self._attempt_done_at = "running", self.clock()
        try:
            while True:
                if self.leading and not self._within_term(self.clock()):
                    await self._step_down("could not renew within the renew deadline")
                sent_at = await self._attempt()
                if sent_at is not None:
                    self._renewed_at = sent_at
                    self.renewals += 1
                    if not self.leading:
                        self.leading = True
                        log.warning("lease %s/%s: %s is now the leader", self.namespace, self.name, self.identity)
                        if self.on_started_leading:
                            await self.on_started_leading()
                elif self.leading and not self._within_term(self.clock()):
                    await self._step_down("could not renew within the renew deadline")
                await asyncio.sleep(self.retry_period)
        except asyncio.CancelledError:
            self._state = "stopped"
            raise
        except BaseException:
            self._state = "crashed"
            log.exception("lease %s/%s: the election loop failed", self.namespace, self.name)
            raise
        finally:
            if self.leading:
                await self._step_down("stopping")

    async def _attempt(self) -> float | None:
        """One try, cut off at the renew deadline while leading (else after ``renew_deadline``)."""
        budget = self.renew_deadline
        if self.leading:
            budget = max(self._renewed_at + self.renew_deadline - self.clock(), 0.0)
        self._stalled = False
        try:
            sent_at = await asyncio.wait_for(self._try_acquire_or_renew(), budget)
        except TimeoutError:
            log.warning("lease %s/%s: no answer within %.1fs", self.namespace, self.name, budget)
            return None
        if not self._stalled:
            self._attempt_done_at = self.clock()
        return sent_at

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

    async def _try_acquire_or_renew(self) -> float | None:
        """The send time of a successful create or renewal of the Lease for us, else None."""
        try:
            lease = await self.cluster.get_lease(self.namespace, self.name)
            if lease is None:
                sent_at = self.clock()
                await self.cluster.create_lease(self.namespace, self._lease(None))
                self.transitions, self.holder = 0, self.identity
                return sent_at
            spec: dict[str, Any] = lease.get("spec") or {}
            version = lease["metadata"]["resourceVersion"]
            if version != self._observed_version:
                self._observed_version, self._observed_at = version, self.clock()
            self.holder = spec.get("holderIdentity")
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            held_by_other = bool(self.holder) and self.holder != self.identity
            if held_by_other and self.clock() < self._observed_at + duration:
                return None
            body = self._lease(lease)
            sent_at = self.clock()
            await self.cluster.replace_lease(self.namespace, self.name, body)
            self.holder = self.identity
            return sent_at
        except KubeError as exc:
            self._stalled = isinstance(exc, RequestAbandoned) and not exc.started
            if exc.status != 409:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return None

    def _lease(self, current: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time()
        spec: dict[str, Any] = dict((current or {}).get("spec") or {})
        taking_over = spec.get("holderIdentity") != self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if current is not None and taking_over else 0)
        self.transitions = transitions
        spec.update(
            holderIdentity=self.identity,
            # Rounded up: others wait at least as long as this replica assumes it holds the lease.
            leaseDurationSeconds=math.ceil(self.lease_duration),
            renewTime=now,
            leaseTransitions=transitions,
        )
        if taking_over or "acquireTime" not in spec:
            spec["acquireTime"] = now
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
