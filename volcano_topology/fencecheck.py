"""Whether the API server's writer fence is in force for this operator's Lease (volcano_topology.fence).

The fence is installed by whoever installs the operator, and can be missing, bound to another Lease,
or (Kubernetes 1.36 without the fix of kubernetes/kubernetes#133827) blind to its Lease after a
reinstall. The leader finds out with a server-side dry run of a create in a term no Lease ever has:
refused by the fence means in force. Nothing is stored; the request needs no permission beyond the
HyperNode ``create`` the operator has.
"""

from __future__ import annotations

import logging
from enum import IntEnum

from volcano_topology import fence
from volcano_topology.kube import ClusterClient, KubeError

log = logging.getLogger(__name__)


class FenceState(IntEnum):
    """The gauge's values."""

    UNKNOWN = -1  # not checked yet, or the check itself failed
    ABSENT = 0  # a create in a stale term would pass
    IN_FORCE = 1


async def check_fence(cluster: ClusterClient, namespace: str, lease: str, identity: str) -> FenceState:
    """One dry-run probe; logs a warning when the fence is not in force."""
    where = f"Lease {namespace}/{lease}"
    try:
        await cluster.dry_run_create_hypernode(fence.probe(namespace, lease, identity))
    except KubeError as exc:
        if fence.is_fenced(exc.status, exc.message):
            log.info("writer fence: in force for %s", where)
            return FenceState.IN_FORCE
        if exc.status != 409:  # 409: the probe's name exists, so the create was admitted: no fence
            log.warning("writer fence: could not check it for %s: %s", where, exc)
            return FenceState.UNKNOWN
    log.warning(
        "writer fence: NOT in force for %s: a create sent by a leader that lost the lease (paused past it) "
        "could land after the next leader's writes; install deploy/base/writer-fence.yaml (Helm: "
        "writerFence.enabled) with paramRef naming this Lease",
        where,
    )
    return FenceState.ABSENT
