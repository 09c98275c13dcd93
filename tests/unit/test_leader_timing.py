"""The elector's timing rules with a fake clock and a fake Lease store (no server)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from volcano_topology.config import ConfigError, parse_configuration
from volcano_topology.kube import ClusterClient, KubeError
from volcano_topology.leader import LeaderElector, check_timings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Leases:
    """Stands in for ClusterClient's Lease calls; ``on_replace`` runs while a replace is "in flight"."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.on_replace: Any = None
        self.hang = asyncio.Event()
        self.hanging = False

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.hanging:
            await self.hang.wait()
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._store(body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.on_replace is not None:
            await self.on_replace()
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "stale")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


def elector(leases: Leases, clock: Clock, **timings: Any) -> LeaderElector:
    timings = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0, "request_timeout": 4.0} | timings
    cluster: ClusterClient = leases  # type: ignore[assignment]
    return LeaderElector(cluster, "ns", "lease", "me", clock=clock, **timings)


async def test_a_renewal_counts_from_when_it_was_sent_not_when_it_was_answered() -> None:
    clock = Clock()
    leases = Leases(clock)
    e = elector(leases, clock)
    e.leading = True
    sent = clock.now

    async def slow_answer() -> None:
        clock.now += 3.0  # the server applies at once; the answer takes 3 s

    leases.lease = None
    assert await e._try_acquire_or_renew() == sent  # created
    leases.on_replace = slow_answer
    clock.now = sent + 1.0
    renewed = await e._try_acquire_or_renew()
    assert renewed == sent + 1.0, "stamped before the request went out"
    e._renewed_at = renewed
    clock.now = renewed + 9.99
    assert e.is_leader()
    clock.now = renewed + 10.0
    assert not e.is_leader(), "closed at the renew deadline, counted from the send"


def test_the_gate_leaves_every_request_timeout_inside_the_lease() -> None:
    clock = Clock()
    e = elector(Leases(clock), clock)
    e.leading, e._renewed_at = True, clock.now
    e.request_timeout = 6.0  # e.g. raised at run time: now lease - timeout (9 s) comes before the renew deadline
    clock.now += 8.99
    assert e.is_leader()
    clock.now += 0.02
    assert not e.is_leader(), "a request sent now could still be in flight when the lease expires for others"
    e.leading = False
    clock.now = e._renewed_at
    assert not e.is_leader(), "never open while not leading"


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        ({"renew_deadline": 10.0, "request_timeout": 5.0}, r"renewDeadline 10s \+ requestTimeout 5s = 15s"),
        ({"retry_period": 10.0}, "retryPeriod < renewDeadline"),
    ],
)
def test_inconsistent_timings_are_refused(timings: dict[str, float], message: str) -> None:
    values = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 2.0, "request_timeout": 4.0} | timings
    with pytest.raises(ValueError, match=message):
        check_timings(**values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "operator: {requestTimeout: 6s, leaderElection: {leaseDuration: 15s, renewDeadline: 10s}}",
            r"leaderElection.renewDeadline \(10s\) \+ requestTimeout \(6s\) must be less than "
            r"leaderElection.leaseDuration \(15s\)",
        ),
        ("operator: {leaderElection: {retryPeriod: 10s}}", "retryPeriod < renewDeadline"),
    ],
)
def test_the_configuration_refuses_a_request_timeout_that_outlives_the_lease(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_configuration(text)


def test_the_defaults_are_consistent_and_disabled_election_has_no_constraint() -> None:
    operator = parse_configuration("").operator
    election = operator.leader_election
    assert election.renew_deadline + operator.request_timeout < election.lease_duration
    assert parse_configuration("operator: {requestTimeout: 30s, leaderElection: {enabled: false}}")


async def test_the_leader_steps_down_at_the_renew_deadline_even_when_a_renewal_hangs() -> None:
    leases = Leases(Clock())
    stopped = asyncio.Event()

    async def on_stopped() -> None:
        stopped.set()

    e = LeaderElector(leases, "ns", "lease", "me", lease_duration=1.0, renew_deadline=0.4, retry_period=0.05,  # type: ignore[arg-type]
                      request_timeout=0.3, on_stopped_leading=on_stopped)  # fmt: skip
    task = asyncio.create_task(e.run())
    try:
        for _ in range(100):
            if e.is_leader():
                break
            await asyncio.sleep(0.01)
        assert e.is_leader()
        leases.hanging = True  # every Lease request from now on never answers
        hung = asyncio.get_running_loop().time()
        await asyncio.wait_for(stopped.wait(), 2.0)
        took = asyncio.get_running_loop().time() - hung
        assert not e.leading and not e.is_leader()
        assert took < 0.4 + 0.15, f"stepped down {took:.2f}s after the last renewal"
    finally:
        task.cancel()
        leases.hang.set()
        await asyncio.gather(task, return_exceptions=True)


async def test_liveness_fails_when_the_loop_stops_completing_attempts() -> None:
    leases = Leases(Clock())
    hang = asyncio.Event()

    async def on_started() -> None:
        await hang.wait()  # e.g. starting the providers never returns

    e = LeaderElector(leases, "ns", "lease", "me", lease_duration=0.3, renew_deadline=0.2, retry_period=0.05,  # type: ignore[arg-type]
                      request_timeout=0.05, on_started_leading=on_started)  # fmt: skip
    assert e.renewing(), "not started yet: nothing to fail"
    task = asyncio.create_task(e.run())
    try:
        await asyncio.sleep(0.1)
        assert e.renewing()
        await asyncio.sleep(0.35)
        assert not e.renewing()
    finally:
        hang.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert e.renewing(), "stopped on purpose: healthy"


async def test_liveness_fails_when_the_loop_crashed() -> None:
    class Broken(Leases):
        async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
            raise RuntimeError("bug")

    e = elector(Broken(Clock()), Clock())
    with pytest.raises(RuntimeError):
        await e.run()
    assert not e.renewing()
