"""The writer fence: the API server refuses a deposed leader's late creates.

A create carries no ``resourceVersion``, so unlike an update or a delete the server cannot
refuse it as stale. A leader that was paused (SIGSTOP, a VM freeze, a long GC) after its write
gate passed sends such a create on resuming, after the next leader may already have written;
and since creates are server-side applies under the provider's field manager (the same on every
replica), one that meets an object the next leader created meanwhile overwrites it.
The elector's timing rules (:mod:`volcano_topology.leader`) cannot stop bytes already on their
way; only the server can. So every create of a leader-elected operator carries the term it was
sent in (``TERM_ANNOTATION``: ``namespace/name/holderIdentity/leaseTransitions`` of the Lease,
read in the worker thread right after the gate check), and the ValidatingAdmissionPolicy shipped
in ``deploy/base/writer-fence.yaml`` (and the Helm chart) refuses a create of one of our
HyperNodes whose term is not the Lease's current one. The policy's parameter is the Lease; a
term names its Lease, so each installation's fence checks only the creates of its own leader.

Only requests that put a term on an object are checked (a create, or a create that met an
existing object: the annotation is new or changed), and only of objects carrying our managed-by
label: Volcano's controller, people and an operator without leader election are never
affected. The annotation keeps the value it was created with: later applies carry it over
unchanged, so they are not checked, and a new term never rewrites an object (no needless
writes after a failover).

Limits: the policy reads the Lease through the API server's informer, so a term change
reaches admission a few milliseconds after the Lease update; a create admitted just before
it still lands. With several API servers each has its own informer. A create of the old term
held on the network past the lease (not a paused process: bytes already sent) that meets the
object it created itself in that term is not told apart from a later update. Without the
policy installed the annotation is inert and only the client-side gate guards creates.
"""

from __future__ import annotations

from typing import Any

TERM_ANNOTATION = "volcano-topology.io/writer-term"
POLICY_NAME = "volcano-topology-writer-fence"


def term(namespace: str, lease: str, identity: str, transitions: int) -> str:
    """The term as the policy computes it from the Lease: ``namespace/name/holderIdentity/leaseTransitions``."""
    return f"{namespace}/{lease}/{identity}/{transitions}"


def stamped(body: dict[str, Any], current: str) -> dict[str, Any]:
    """A copy of ``body`` whose annotations carry ``current`` as its term (``body`` is left as it is)."""
    metadata = dict(body.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), TERM_ANNOTATION: current}
    return {**body, "metadata": metadata}


def is_fenced(status: int, message: str) -> bool:
    """True for the API server's answer when the writer fence refused a request: its message starts with
    the annotation's key (whatever the policy is named, e.g. by a Helm release)."""
    return status == 403 and f"denied request: {TERM_ANNOTATION}:" in message


PROBE_NAME = "volcano-topology-writer-fence-probe"


def probe(namespace: str, lease: str, identity: str) -> dict[str, Any]:
    """A valid HyperNode of ours sent in a term no Lease ever has (transitions -1): the fence must refuse it.

    Sent only as a dry run (:mod:`volcano_topology.fencecheck`), so it is never stored."""
    return {
        "apiVersion": "topology.volcano.sh/v1alpha1",
        "kind": "HyperNode",
        "metadata": {
            "name": PROBE_NAME,
            "labels": {"app.kubernetes.io/managed-by": "volcano-topology"},
            "annotations": {TERM_ANNOTATION: term(namespace, lease, identity, -1)},
        },
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": PROBE_NAME}}}]},
    }
