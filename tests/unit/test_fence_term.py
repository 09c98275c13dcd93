"""The writer's side of the fence without a server: which requests carry the term, read when, and why a
term annotation never makes a write (the policy on a real server: tests/integration/test_writer_fence.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client

from tests.builders import leaf
from tests.unit.test_leader_timing import Clock, Leases, elector
from volcano_topology import controller as controller_module
from volcano_topology import fence, ownership
from volcano_topology.api import HyperNode, ObjectMeta
from volcano_topology.controller import ConfigSource, Controller
from volcano_topology.fencecheck import FenceState
from volcano_topology.kube import HyperNodeClient, NotLeading
from volcano_topology.plan import Observed, matches, with_ownership
from volcano_topology.views import diff

MANAGER = ownership.field_manager("fabric")


class Recording:
    """Stands in for CustomObjectsApi.patch_cluster_custom_object: keeps what was sent, from which thread."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], str]] = []

    def patch_cluster_custom_object(self, group: str, version: str, plural: str, name: str, body: Any,
                                    **_: Any) -> Any:  # fmt: skip
        self.sent.append((json.loads(json.dumps(body)), threading.current_thread().name))
        return SimpleNamespace(data=json.dumps(body).encode())


def recording_client(term: Any, gate: Any = None) -> tuple[HyperNodeClient, Recording]:
    hypernodes = HyperNodeClient(client.ApiClient(), concurrency=1, timeout=5.0, gate=gate, term=term)
    recording = Recording()
    hypernodes._objects = recording  # type: ignore[assignment]
    return hypernodes, recording


def body(name: str = "l1", **metadata: Any) -> dict[str, Any]:
    return with_ownership(leaf(name, "n1"), "fabric").to_dict() | {"metadata": {"name": name, **metadata}}


async def test_a_create_carries_the_term_read_in_the_worker_thread_at_send_time() -> None:
    reads: list[str] = []
    terms = iter(["ns/lease/a/0", "ns/lease/b/1"])

    def term() -> str:
        reads.append(threading.current_thread().name)
        return next(terms)

    hypernodes, recording = recording_client(term)
    sent = body(annotations={"keep": "me"})
    await hypernodes.apply(sent, MANAGER, force=False, create=True)
    await hypernodes.apply(body("l2"), MANAGER, force=False, create=True)
    hypernodes.close()
    [(first, thread), (second, _)] = recording.sent
    assert first["metadata"]["annotations"] == {"keep": "me", fence.TERM_ANNOTATION: "ns/lease/a/0"}
    assert second["metadata"]["annotations"] == {fence.TERM_ANNOTATION: "ns/lease/b/1"}, "read again for each"
    assert reads == [thread, thread] and thread.startswith("hypernode-requests"), "read where the request is sent"
    assert sent["metadata"]["annotations"] == {"keep": "me"}, "the caller's body is left as it was"


async def test_without_a_term_a_create_is_not_sent() -> None:
    hypernodes, recording = recording_client(lambda: None, gate=lambda: True)
    with pytest.raises(NotLeading):
        await hypernodes.apply(body(), MANAGER, force=False, create=True)
    hypernodes.close()
    assert recording.sent == []


async def test_only_creates_carry_a_term_and_no_term_means_no_annotation() -> None:
    hypernodes, recording = recording_client(lambda: "ns/lease/a/0")
    await hypernodes.apply(body(resourceVersion="7"), MANAGER, force=True)  # an update
    await hypernodes.apply({"apiVersion": "x", "kind": "HyperNode", "metadata": {"name": "l1"}}, MANAGER,
                           force=False)  # fmt: skip  # a give-back: applies nothing
    unfenced, plain = recording_client(None)  # no leader election
    await unfenced.apply(body(), MANAGER, force=False, create=True)
    hypernodes.close()
    unfenced.close()
    assert [sent.get("metadata", {}).get("annotations") for sent, _ in recording.sent + plain.sent] == [None] * 3


async def test_the_electors_term_is_the_leases_own_fields_and_none_when_not_leading() -> None:
    clock = Clock()
    leases = Leases(clock)
    e = elector(leases, clock)
    assert e.term() is None
    e._renewed_at = await e._try_acquire_or_renew() or 0.0  # created: holder "me", 0 transitions
    e.leading = True
    assert e.term() == "ns/lease/me/0"
    assert leases.lease is not None
    clock.now += 100.0
    assert e.term() is None, "past the renew deadline: no term, like the gate"
    e.leading = False
    taken = leases.lease | {"spec": leases.lease["spec"] | {"holderIdentity": "other", "leaseTransitions": 1}}
    leases._store(taken)  # another replica holds it now...
    assert await e._try_acquire_or_renew() is None
    clock.now += 20.0  # ...and lets it expire: this one takes it back, in a new term
    e._renewed_at = await e._try_acquire_or_renew() or 0.0
    e.leading = True
    assert e.term() == "ns/lease/me/2" == fence.term("ns", "lease", "me", leases.lease["spec"]["leaseTransitions"])


def observed(hypernode: HyperNode, annotations: dict[str, str], owned: frozenset[str]) -> Observed:
    obj = hypernode.to_dict()
    obj["metadata"].update(annotations=annotations, resourceVersion="1", uid="u")
    entry = {"manager": MANAGER, "operation": "Apply",
             "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{k}": {} for k in owned}}}}  # fmt: skip
    obj["metadata"]["managedFields"] = [entry]
    return Observed.from_dict(obj)


@given(
    term=st.text(min_size=1, max_size=40),
    provided=st.dictionaries(st.sampled_from(["a.io/x", "b.io/y", fence.TERM_ANNOTATION]), st.text(max_size=8)),
)
def test_the_term_annotation_never_makes_an_object_differ(term: str, provided: dict[str, str]) -> None:
    """Whatever a provider puts in its annotations, the term is the writer's: dropped from what it wants, and
    left out when deciding whether to write, owned by us or not."""
    meta = ObjectMeta(name="l1", annotations=provided or None)
    desired = with_ownership(leaf("l1", "n1").model_copy(update={"metadata": meta}), "fabric")
    wanted = desired.metadata.annotations or {}
    assert fence.TERM_ANNOTATION not in wanted
    live = {**wanted, fence.TERM_ANNOTATION: term}
    assert matches(desired, observed(desired, live, frozenset(live)), MANAGER)
    assert matches(desired, observed(desired, live, frozenset(wanted)), MANAGER)


def test_another_owned_annotation_the_provider_no_longer_wants_still_makes_a_write() -> None:
    desired = with_ownership(leaf("l1", "n1"), "fabric")
    live = {"a.io/x": "1", fence.TERM_ANNOTATION: "ns/lease/a/0"}
    assert not matches(desired, observed(desired, live, frozenset(live)), MANAGER)


def test_diff_never_shows_the_term_annotation_as_a_change() -> None:
    """``volcano-topology diff`` diffs what the apply touches; the writer carries the term over unchanged."""
    desired = with_ownership(leaf("l1", "n1", "n2"), "fabric")
    live = observed(with_ownership(leaf("l1", "n1"), "fabric"), {fence.TERM_ANNOTATION: "ns/lease/a/0"},
                    frozenset({fence.TERM_ANNOTATION}))  # fmt: skip
    before = diff._observed_view(live, MANAGER, desired)
    assert fence.TERM_ANNOTATION not in (before["metadata"].get("annotations") or {})
    gone = diff._observed_view(live, MANAGER, None)  # a delete shows the object as it is
    assert gone["metadata"]["annotations"] == {fence.TERM_ANNOTATION: "ns/lease/a/0"}


async def test_the_leader_checks_the_fence_at_each_term_start_and_every_period_while_it_leads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller_module, "FENCE_CHECK_EVERY", 0.05)
    controller = Controller(client.ApiClient(client.Configuration()), ConfigSource.parse(str(tmp_path / "c"), None))
    checks: list[float] = []
    answers = iter([FenceState.ABSENT, *[FenceState.IN_FORCE] * 1000])

    async def check() -> FenceState:
        checks.append(asyncio.get_running_loop().time())
        return next(answers)

    controller.fence_check = check
    assert controller.fence_state == FenceState.UNKNOWN, "not checked yet"
    await controller.start_leading()
    await asyncio.sleep(0.01)
    assert len(checks) == 1 and controller.fence_state == FenceState.ABSENT, "at once when the term starts"
    await asyncio.sleep(0.3)
    assert len(checks) >= 3 and controller.fence_state == FenceState.IN_FORCE, "and again every period"
    await controller.stop_leading()
    stopped = len(checks)
    await asyncio.sleep(0.2)
    assert len(checks) == stopped, "never while not leading"
    await controller.start_leading()
    await asyncio.sleep(0.01)
    assert len(checks) == stopped + 1, "a new term checks at once"
    await controller.shutdown(drain=0)
