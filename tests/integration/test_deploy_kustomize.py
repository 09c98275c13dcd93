"""deploy/ against a real API server: applied exactly as deploy/README.md says, then the operator runs as
the deployed ServiceAccount (a TokenRequest token: no impersonation, no admin) and converges, and a
SelfSubjectAccessReview matrix with that same token shows what it may do and, above all, what it may not.

This module starts a control plane of its own: what it installs (a Namespace, cluster-wide RBAC, the CRD
through the manifests) must neither depend on nor leak into the shared one. The tests run in file order:
the base install first, then the overlays on top of it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.operator_harness import OperatorProcess, provider_dir, static_leaf
from tests.unit.test_deploy_manifests import DEPLOY, KUBECTL, ROOT, kustomize
from volcano_topology import fence, kube
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.controlplane.cluster import LocalControlPlane

NS = "volcano-topology"
ACCOUNT = "volcano-topology"
# kopf cannot watch CRDs without CRD access, which the operator is not given: it says so, once.
EXPECTED_FORBIDDEN = ("customresourcedefinitions",)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(tmp_path_factory.mktemp("deploy-kustomize"), build=False) as control_plane:
        yield control_plane


def kubectl(plane: LocalControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([KUBECTL, "--kubeconfig", str(plane.kubeconfig), *args], input=stdin,
                            capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def apply_dry_run_then_for_real(plane: LocalControlPlane, target: str) -> None:
    """The API server (admission, schemas, RBAC escalation checks) accepts every object before it is stored.

    A server-side dry run of a namespaced object needs its Namespace to exist, so the Namespaces go
    first (dry run, then for real); then everything is dry-run, then applied as the README says.
    """
    namespaces = [d for d in kustomize(ROOT / target) if d["kind"] == "Namespace"]
    if namespaces:
        manifest = yaml.safe_dump_all(namespaces)
        kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=manifest)
        kubectl(plane, "apply", "-f", "-", stdin=manifest)
    kubectl(plane, "apply", "--dry-run=server", "-k", target)
    kubectl(plane, "apply", "-k", target)


# -- identity and authorization matrix -------------------------------------------------------


@dataclass(frozen=True)
class Check:
    verb: str
    resource: str
    group: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    def body(self) -> dict[str, Any]:
        attributes = {k: v for k, v in vars(self).items() if v}
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }


def allowed(plane: LocalControlPlane, token: str, check: Check) -> bool:
    """Asked with the identity's own token: the answer is about exactly that identity."""
    status, answer = plane.request(
        "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", check.body(), token=token
    )
    assert status == 201, answer
    return bool(answer["status"]["allowed"])


def account_token(plane: LocalControlPlane, namespace: str = NS, account: str = ACCOUNT) -> str:
    status, _ = plane.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}")
    assert status == 200, "the manifests must create the ServiceAccount"
    return plane.mint_token(namespace, account)


HYPERNODES = "topology.volcano.sh"
RBAC = "rbac.authorization.k8s.io"


def must_allow(ns: str, config_map: str, lease: str) -> list[Check]:
    return [
        *(Check(v, "hypernodes", HYPERNODES) for v in ("get", "list", "watch", "create", "patch", "delete")),
        Check("patch", "hypernodes", HYPERNODES, subresource="status"),
        Check("get", "configmaps", namespace=ns, name=config_map),
        Check("create", "leases", "coordination.k8s.io", ns),
        Check("get", "leases", "coordination.k8s.io", ns, lease),
        Check("update", "leases", "coordination.k8s.io", ns, lease),
        Check("create", "events", namespace=ns),
        Check("create", "events", namespace="default"),  # about HyperNodes: cluster-scoped objects' Events live there
    ]


def must_deny(ns: str, config_map: str, lease: str) -> list[Check]:
    """What the operator's identity must never be able to do, whatever the overlay."""
    return [
        # Nodes: never written
        *(Check(v, "nodes") for v in ("create", "update", "patch", "delete", "deletecollection")),
        Check("patch", "nodes", subresource="status"),
        # Secrets: never listed or watched, never written, none in another namespace
        *(Check(v, "secrets", namespace=ns) for v in ("list", "watch", "create", "update", "patch", "delete")),
        Check("get", "secrets", namespace=ns, name="some-other-secret"),
        Check("get", "secrets", namespace="kube-system", name="ufm-credentials"),
        Check("list", "secrets"),
        # CRDs: not even read
        *(
            Check(v, "customresourcedefinitions", "apiextensions.k8s.io")
            for v in ("get", "list", "watch", "create", "update", "patch", "delete")
        ),
        # RBAC: no writes, no bind, no escalate
        *(
            Check(v, r, RBAC, n)
            for r, n in (("roles", ns), ("rolebindings", ns), ("clusterroles", ""), ("clusterrolebindings", ""))
            for v in ("create", "update", "patch", "delete", "bind", "escalate")
        ),
        # impersonation of anyone
        *(Check("impersonate", r) for r in ("users", "groups", "serviceaccounts")),
        Check("impersonate", "userextras", "authentication.k8s.io"),
        Check("create", "serviceaccounts", subresource="token", namespace=ns, name=ACCOUNT),
        # its own namespace: only what it needs
        Check("update", "configmaps", namespace=ns, name=config_map),
        Check("get", "configmaps", namespace=ns, name="someone-elses"),
        Check("list", "configmaps", namespace=ns),
        Check("get", "leases", "coordination.k8s.io", ns, "another-lease"),
        Check("update", "leases", "coordination.k8s.io", ns, "another-lease"),
        Check("delete", "leases", "coordination.k8s.io", ns, lease),
        Check("create", "pods", namespace=ns),
        Check("create", "pods", namespace=ns, subresource="exec"),
        Check("patch", "deployments", "apps", ns, ACCOUNT),
        # writes outside its namespace (HyperNodes are cluster-scoped and allowed above)
        Check("create", "events", namespace="kube-system"),
        *(Check(v, "events", namespace="default") for v in ("get", "list", "update", "patch", "delete")),
        Check("create", "leases", "coordination.k8s.io", "kube-system"),
        Check("create", "configmaps", namespace="default"),
        Check("create", "namespaces"),
        Check("delete", "namespaces", name=ns),
        # HyperNodes: only the verbs it uses
        Check("update", "hypernodes", HYPERNODES),
        Check("deletecollection", "hypernodes", HYPERNODES),
        Check("update", "hypernodes", HYPERNODES, subresource="status"),
        Check("*", "*", "*"),
    ]


def assert_matrix(plane: LocalControlPlane, token: str, allow: list[Check], deny: list[Check]) -> None:
    wrong_denials = [c for c in allow if not allowed(plane, token, c)]
    wrong_grants = [c for c in deny if allowed(plane, token, c)]
    assert not wrong_denials, f"denied but needed: {wrong_denials}"
    assert not wrong_grants, f"allowed but must not be: {wrong_grants}"


# -- running the operator as the deployed identity ----------------------------------------


def account_kubeconfig(plane: LocalControlPlane, token: str, path: Path) -> Path:
    return plane.write_kubeconfig(path, token, f"system:serviceaccount:{NS}:{ACCOUNT}")


def deploy_providers(target: Path) -> Path:
    """The test providers, plus the static one under the names these tests configure."""
    directory = provider_dir(target)
    entry_points = directory / "volcano_topology_test_providers-0.1.dist-info" / "entry_points.txt"
    extra = "".join(f"{n} = static_provider:StaticProvider\n" for n in ("deploy-static", "deploy-ufm"))
    entry_points.write_text(entry_points.read_text() + extra)
    return directory


def set_config(plane: LocalControlPlane, namespace: str, name: str, config: dict[str, Any]) -> None:
    body = {"data": {"config.yaml": yaml.safe_dump(config)}}
    api = kube.api_client(plane.kubeconfig)
    try:
        client.CoreV1Api(api).patch_namespaced_config_map(name, namespace, body)
    finally:
        api.close()


def hypernodes(plane: LocalControlPlane) -> dict[str, dict[str, Any]]:
    status, answer = plane.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
    assert status == 200, answer
    return {item["metadata"]["name"]: item for item in answer["items"]}


def synced(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Synced" and c["status"] == "True" for c in conditions)


def forbidden_lines(operator: OperatorProcess) -> list[str]:
    text = operator.log.read_text(errors="replace") if operator.log.exists() else ""
    return [line for line in text.splitlines() if ("forbidden" in line.lower() or " 403" in line)
            and not any(allowed in line for allowed in EXPECTED_FORBIDDEN)]  # fmt: skip


def start_operators(kubeconfig: Path, workdir: Path, providers: Path, config_map: str, count: int,
                    monkeypatch: pytest.MonkeyPatch) -> list[OperatorProcess]:  # fmt: skip
    # As in the Deployment: POD_NAMESPACE from the downward API; the lease lives there.
    monkeypatch.setenv("POD_NAMESPACE", NS)
    return [
        OperatorProcess(
            kubeconfig, workdir, config_map=config_map, provider_path=providers, identity=f"replica-{i}"
        ).start()
        for i in range(count)
    ]


def stop_all(operators: list[OperatorProcess], timeout: float = 30.0) -> list[int]:
    return [operator.stop(timeout=timeout) for operator in operators]


def wait_until(condition: Any, within: float, what: str, operators: list[OperatorProcess]) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for operator in operators:
            if operator.process is not None and operator.process.poll() is not None:
                raise AssertionError(f"operator exited:\n{operator.tail()}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {within:.0f}s:\n" + "\n---\n".join(o.tail() for o in operators))


def lease_holder(plane: LocalControlPlane, namespace: str, name: str) -> str | None:
    status, answer = plane.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    return answer["spec"].get("holderIdentity") if status == 200 else None


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(plane: LocalControlPlane) -> str:
    apply_dry_run_then_for_real(plane, "deploy/")
    kubectl(plane, "wait", "--for=condition=Established", "crd/hypernodes.topology.volcano.sh", "--timeout=60s")
    # A fresh CRD answers 429 for a moment while its storage initialises.
    deadline = time.monotonic() + 30
    while plane.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return account_token(plane)


def test_base_applies_and_its_identity_has_exactly_least_privilege(plane: LocalControlPlane, base: str) -> None:
    assert_matrix(plane, base, must_allow(NS, "volcano-topology", "volcano-topology"),
                  [*must_deny(NS, "volcano-topology", "volcano-topology"),
                   *(Check(v, "nodes") for v in ("get", "list", "watch")),
                   Check("get", "secrets", namespace=NS, name="ufm-credentials")])  # fmt: skip


def test_base_deployment_is_accepted_as_written(plane: LocalControlPlane, base: str) -> None:
    """Stored as written (no kubelet runs it here): the hardening is not dropped by defaulting."""
    status, deployment = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/volcano-topology")
    assert status == 200
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["replicas"] == 2
    status, _ = plane.request("GET", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/volcano-topology")
    assert status == 200


def test_two_replicas_as_the_deployed_identity_converge(
    plane: LocalControlPlane, base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "networkTopologyDiscovery": [
            {"source": "deploy-static", "config": {"hypernodes": [static_leaf("deploy-leaf-0", "n0", "n1")]}}
        ],
        "operator": {"leaderElection": {"enabled": True, "leaseName": "volcano-topology"}},
    }
    set_config(plane, NS, "volcano-topology", config)
    kubeconfig = account_kubeconfig(plane, base, tmp_path / "sa.kubeconfig")
    operators = start_operators(kubeconfig, tmp_path, deploy_providers(tmp_path / "providers"),
                                f"{NS}/volcano-topology", 2, monkeypatch)  # fmt: skip
    try:
        wait_until(lambda: synced(hypernodes(plane).get("deploy-leaf-0") or {}), 60, "a Synced HyperNode", operators)
        holder = lease_holder(plane, NS, "volcano-topology")
        assert holder in {o.identity for o in operators}
        wait_until(lambda: all(o.ready().get("ready") is True for o in operators), 30, "both ready", operators)
        # The writer fence the base installs is in force, as the leader itself found out; its create carries
        # its term.
        [leading] = [o for o in operators if o.identity == holder]
        fenced = "volcano_topology_writer_fence"
        wait_until(lambda: leading.metric(fenced) == 1, 60, "the leader finds the fence in force", operators)
        annotations = hypernodes(plane)["deploy-leaf-0"]["metadata"].get("annotations") or {}
        _, lease = plane.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/volcano-topology")
        transitions = int(lease["spec"].get("leaseTransitions") or 0)
        assert annotations.get(fence.TERM_ANNOTATION) == fence.term(NS, "volcano-topology", str(holder), transitions)
        for operator in operators:
            assert not forbidden_lines(operator), operator.tail()
    finally:
        # The standby first, so that nobody takes over the Lease the leader hands back.
        leader = lease_holder(plane, NS, "volcano-topology")
        codes = stop_all(sorted(operators, key=lambda o: o.identity == leader))
    # SIGTERM as the kubelet sends it: a clean exit, and the Lease handed back (its update is allowed).
    assert codes == [0, 0], [o.tail() for o in operators]
    assert lease_holder(plane, NS, "volcano-topology") is None
    plane.request("DELETE", f"/apis/{GROUP}/{VERSION}/{PLURAL}/deploy-leaf-0")


@pytest.fixture(scope="module")
def overlays(plane: LocalControlPlane, base: str) -> str:
    for target in ("deploy/overlays/label-provider", "deploy/overlays/ufm"):
        apply_dry_run_then_for_real(plane, target)
    return base


def test_overlays_grant_node_reads_and_the_named_secret_only(plane: LocalControlPlane, overlays: str) -> None:
    allow = [
        *must_allow(NS, "volcano-topology", "volcano-topology"),
        *(Check(v, "nodes") for v in ("get", "list", "watch")),
        Check("get", "secrets", namespace=NS, name="ufm-credentials"),
    ]
    assert_matrix(plane, overlays, allow, must_deny(NS, "volcano-topology", "volcano-topology"))


def test_with_overlays_it_reads_its_secret_and_nodes_and_converges(
    plane: LocalControlPlane, overlays: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = {"apiVersion": "v1", "metadata": {}}
    for name in ("n0", "n1", "n2"):
        plane.request("POST", "/api/v1/nodes", {**core, "kind": "Node", "metadata": {"name": name}})
    for name, value in (("ufm-credentials", "czNjcmV0"), ("some-other-secret", "bm9wZQ==")):
        plane.request("POST", f"/api/v1/namespaces/{NS}/secrets",
                      {**core, "kind": "Secret", "metadata": {"name": name}, "data": {"token": value}})  # fmt: skip
    config = {
        "networkTopologyDiscovery": [
            {
                "source": "deploy-ufm",
                "credentials": {"secretRef": {"name": "ufm-credentials"}},
                "config": {"hypernodes": [static_leaf("deploy-ufm-0", "n0", "n1", "n2")], "credentialLabel": "token"},
            }
        ],
        "operator": {"leaderElection": {"enabled": True}, "status": {"nodeCount": True}},
    }
    set_config(plane, NS, "volcano-topology", config)
    kubeconfig = account_kubeconfig(plane, overlays, tmp_path / "sa.kubeconfig")
    operators = start_operators(kubeconfig, tmp_path, deploy_providers(tmp_path / "providers"),
                                f"{NS}/volcano-topology", 1, monkeypatch)  # fmt: skip
    try:

        def done() -> bool:
            obj = hypernodes(plane).get("deploy-ufm-0") or {}
            return synced(obj) and (obj.get("status") or {}).get("nodeCount") == 3

        wait_until(done, 60, "a Synced HyperNode with nodeCount 3", operators)
        assert hypernodes(plane)["deploy-ufm-0"]["metadata"]["labels"]["credential"] == "s3cret"
        assert not forbidden_lines(operators[0]), operators[0].tail()
    finally:
        codes = stop_all(operators)
    assert codes == [0], operators[0].tail()  # with the Node watch running too


def test_optional_components_apply(plane: LocalControlPlane, overlays: str, tmp_path: Path) -> None:
    """PodMonitor (with a stand-in for the Prometheus Operator's CRD) and the Volcano ConfigMap reader."""
    podmonitor_crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "podmonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "podmonitors", "singular": "podmonitor", "kind": "PodMonitor"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    kubectl(plane, "apply", "-f", "-", stdin=yaml.safe_dump(podmonitor_crd))
    kubectl(plane, "wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com", "--timeout=60s")
    kubectl(plane, "create", "namespace", "volcano-system")
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY / "base", tmp_path)],
                "components": [
                    os.path.relpath(DEPLOY / "components" / c, tmp_path)
                    for c in ("monitoring", "volcano-configmap-reader")
                ],
            }
        )
    )
    apply_dry_run_then_for_real(plane, str(tmp_path))
    token = account_token(plane)
    assert allowed(plane, token, Check("get", "configmaps", namespace="volcano-system",
                                       name="volcano-controller-configmap"))  # fmt: skip
    assert not allowed(plane, token, Check("get", "configmaps", namespace="volcano-system", name="other"))
    assert not allowed(plane, token, Check("get", "secrets", namespace="volcano-system"))


def test_make_deploy_sets_the_image_and_undeploy_keeps_the_crd(plane: LocalControlPlane, overlays: str) -> None:
    def make(*args: str) -> None:
        # -o: never reinstall the venv from here; KUBECTL talks to this test's control plane.
        command = ["make", "-o", ".venv/.installed", *args, f"KUBECTL={KUBECTL} --kubeconfig {plane.kubeconfig}"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    make("deploy", "IMAGE=registry.example.com/infra/volcano-topology", "TAG=dev")
    status, deployment = plane.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/volcano-topology")
    assert status == 200
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/infra/volcano-topology:dev"
    )
    make("undeploy", "OVERLAY=deploy/overlays/ufm")
    gone = [
        f"/apis/apps/v1/namespaces/{NS}/deployments/volcano-topology",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/volcano-topology",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/volcano-topology",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/volcano-topology-credentials",
    ]
    for path in gone:
        assert plane.request("GET", path)[0] == 404, path
    assert (
        plane.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/hypernodes.topology.volcano.sh")[
            0
        ]
        == 200
    )
