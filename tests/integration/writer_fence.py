"""The shipped writer fence (deploy/base/writer-fence.yaml), installed on a test cluster for one Lease."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from volcano_topology import fence, ownership
from volcano_topology.api import GROUP, PLURAL, VERSION

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "base" / "writer-fence.yaml"


class WriterFence:
    """The policy and its binding as shipped, renamed (one per test) and bound to ``namespace/lease``.

    Never removed: each checks only the terms of its own Lease, so one left behind changes nothing for
    other tests. Removing them would: kube-apiserver 1.36 stops the informer of a built-in paramKind
    (Lease) once no binding names it and reuses the stopped one for later policies, whose parameter
    is then never found (kubernetes/kubernetes#130887, #133827; PR #142150 backports the fix to 1.36).
    """

    def __init__(self, api: client.ApiClient, namespace: str, lease: str) -> None:
        self.api, self.namespace, self.lease = api, namespace, lease
        self.name = f"{fence.POLICY_NAME}-{uuid.uuid4().hex[:6]}"
        self.policy, self.binding = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
        self.policy["metadata"]["name"] = self.binding["metadata"]["name"] = self.name
        self.binding["spec"]["policyName"] = self.name
        self.binding["spec"]["paramRef"].update(name=lease, namespace=namespace)

    def install(self) -> WriterFence:
        admission = client.AdmissionregistrationV1Api(self.api)
        admission.create_validating_admission_policy(self.policy)
        admission.create_validating_admission_policy_binding(self.binding)
        return self

    def wait_active(self, timeout: float = 30.0) -> int:
        """Until a create in a term the Lease never had is refused (the Lease must exist): the API server
        loads a new policy, and its parameter, a moment after they are created. Returns the probes sent."""
        objects = client.CustomObjectsApi(self.api)
        probe = f"fence-probe-{self.name[-6:]}"
        body = hypernode(probe, fence.term(self.namespace, self.lease, "never-held", -1))
        deadline, probes = time.monotonic() + timeout, 0
        while True:
            probes += 1
            try:
                objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
            except client.ApiException as exc:
                if fence.is_fenced(int(exc.status or 0), str(exc.body)):
                    return probes
                raise
            objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, probe)
            assert time.monotonic() < deadline, f"the writer fence {self.name} was not in force within {timeout:.0f}s"
            time.sleep(0.2)


def hypernode(name: str, term: str | None, *, managed: bool = True, resource_version: str | None = None,
              ) -> dict[str, Any]:  # fmt: skip
    """A valid leaf; ``managed``: with our managed-by label (no source label: no provider's); ``term``: sent in it."""
    metadata: dict[str, Any] = {"name": name}
    if managed:
        metadata["labels"] = {ownership.MANAGED_BY_LABEL: ownership.MANAGED_BY}
    if term is not None:
        metadata["annotations"] = {fence.TERM_ANNOTATION: term}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperNode",
        "metadata": metadata,
        "spec": {"tier": 1, "members": [{"type": "Node", "selector": {"exactMatch": {"name": f"{name}-node"}}}]},
    }
