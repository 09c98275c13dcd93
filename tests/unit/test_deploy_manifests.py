"""deploy/ (kustomize) and charts/volcano-topology (Helm): what they render, checked offline.

The helpers here (rendering, RBAC normalisation) are shared with tests/integration/test_deploy_rbac.py,
which applies the same output to a real API server and checks what the identity can do there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from volcano_topology import fence
from volcano_topology.config import parse_configuration
from volcano_topology.controlplane.tools import ensure_helm

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = ROOT / "charts" / "volcano-topology"
CRD = ROOT / "crds" / "hypernodes.topology.volcano.sh.yaml"
NAME = "volcano-topology"  # the kustomize names; Helm's full name is normalised to this
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

# Every kustomize target a user applies, and the Helm values that must give the same RBAC.
TARGETS = {
    "deploy": None,
    "deploy/overlays/label-provider": DEPLOY / "overlays" / "label-provider" / "config.yaml",
    "deploy/overlays/ufm": DEPLOY / "overlays" / "ufm" / "config.yaml",
}

Doc = dict[str, Any]


def kustomize(path: Path | str) -> list[Doc]:
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ensure_helm(build=False)), *args], capture_output=True, text=True, timeout=60)


def helm_template(values: Doc | None, tmp: Path, release: str = NAME, namespace: str = NAME) -> list[Doc]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        values_file = tmp / f"values-{release}-{len(list(tmp.iterdir()))}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["-f", str(values_file)]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def values_for(config_file: Path | None) -> Doc | None:
    """Helm values equivalent to a kustomize target: the same configuration file."""
    if config_file is None:
        return None
    return {"config": yaml.safe_load(config_file.read_text())}


@dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource (or one named object), cluster-wide or in a namespace."""

    namespace: str  # "*" for cluster-wide
    group: str
    resource: str
    verb: str
    name: str = ""  # "" = any name


def rbac_grants(docs: list[Doc], account: str, namespace: str) -> set[Grant]:
    """Everything the roles bound to ``namespace/account`` grant, with the account's own names mapped
    to the kustomize ones (so that a Helm release and the kustomize install compare equal)."""

    def norm(value: str) -> str:
        return NAME if value in (account, namespace) else value

    roles = {(d["kind"], d["metadata"].get("namespace", "*"), d["metadata"]["name"]): d for d in docs
             if d["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    grants: set[Grant] = set()
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
                   for s in subjects):  # fmt: skip
            continue
        scope = binding["metadata"].get("namespace", "*")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], scope if ref["kind"] == "Role" else "*", ref["name"])]
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [""]:
                            grants.add(Grant(norm(scope), group, resource, verb, norm(name)))
    return grants


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def config_of(docs: list[Doc]) -> str:
    data: dict[str, str] = find(docs, "ConfigMap")["data"]
    assert list(data) == ["config.yaml"]
    return data["config.yaml"]


BASE_GRANTS = {
    Grant("*", "topology.volcano.sh", "hypernodes", verb)
    for verb in ("get", "list", "watch", "create", "patch", "delete")
} | {
    Grant("*", "topology.volcano.sh", "hypernodes/status", "patch"),
    Grant(NAME, "", "configmaps", "get", NAME),
    Grant(NAME, "coordination.k8s.io", "leases", "create"),
    Grant(NAME, "coordination.k8s.io", "leases", "get", NAME),
    Grant(NAME, "coordination.k8s.io", "leases", "update", NAME),
    Grant(NAME, "", "events", "create"),
    Grant("default", "", "events", "create"),  # Events about cluster-scoped HyperNodes can only go there
}
NODE_GRANTS = {Grant("*", "", "nodes", verb) for verb in ("get", "list", "watch")}
EXPECTED = {
    "deploy": BASE_GRANTS,
    "deploy/overlays/label-provider": BASE_GRANTS | NODE_GRANTS,
    "deploy/overlays/ufm": BASE_GRANTS | {Grant(NAME, "", "secrets", "get", "ufm-credentials")},
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {target: kustomize(ROOT / target) for target in TARGETS}


# -- kustomize -----------------------------------------------------------------------------


def test_crd_only_target_is_exactly_the_crd() -> None:
    assert kustomize(DEPLOY / "crd") == [yaml.safe_load(CRD.read_text())]


def test_every_full_target_installs_the_crd_unchanged(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        assert find(docs, "CustomResourceDefinition") == yaml.safe_load(CRD.read_text())


@pytest.mark.parametrize("target", TARGETS)
def test_rbac_is_exactly_the_least_privilege_set(rendered: dict[str, list[Doc]], target: str) -> None:
    assert rbac_grants(rendered[target], NAME, NAME) == EXPECTED[target]


@pytest.mark.parametrize("target", TARGETS)
def test_configuration_parses_and_matches_its_rbac(rendered: dict[str, list[Doc]], target: str) -> None:
    """The Lease and Secret names the Role allows are the ones the configuration uses."""
    docs = rendered[target]
    config = parse_configuration(config_of(docs))
    election = config.operator.leader_election
    assert election.enabled
    grants = rbac_grants(docs, NAME, NAME)
    assert {g.name for g in grants if g.resource == "leases" and g.name} == {election.lease_name}
    named = {(e.credentials.secret_ref.namespace or NAME, e.credentials.secret_ref.name)
             for e in config.enabled().values() if e.credentials and e.credentials.secret_ref}  # fmt: skip
    assert {(g.namespace, g.name) for g in grants if g.resource == "secrets"} == named
    needs_nodes = config.operator.status.node_count or "label" in config.enabled()
    assert (grants >= NODE_GRANTS) == needs_nodes


def test_no_secret_access_without_resource_names(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        assert all(g.name for g in rbac_grants(docs, NAME, NAME) if g.resource == "secrets")


def test_optional_components_build_on_the_base(tmp_path: Path) -> None:
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
    docs = kustomize(tmp_path)
    monitor = find(docs, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "health", "path": "/metrics", "interval": "30s"}]
    assert Grant("volcano-system", "", "configmaps", "get", "volcano-controller-configmap") in rbac_grants(
        docs, NAME, NAME
    )


def check_deployment(deployment: Doc, config_map: str) -> None:
    """What the issue requires of the Deployment, for kustomize and Helm alike."""
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["args"][0] == "run"
    # The ConfigMap it reads: named explicitly, or the CLI's default $POD_NAMESPACE/volcano-topology.
    explicit = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--config-map=")]
    assert (explicit or ["$(POD_NAMESPACE)/volcano-topology"]) == [f"$(POD_NAMESPACE)/{config_map}"]
    assert pod["serviceAccountName"] == config_map


def test_kustomize_deployment(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["deploy"]
    check_deployment(find(docs, "Deployment"), NAME)
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == find(docs, "Deployment")["spec"]["selector"]
    assert pdb["spec"]["minAvailable"] == 1


def test_cli_default_config_map_is_the_one_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    from volcano_topology.cli import default_config_map

    monkeypatch.setenv("POD_NAMESPACE", "somewhere")
    assert default_config_map() == f"somewhere/{NAME}"


# -- Helm ----------------------------------------------------------------------------------


def test_chart_crd_is_the_repository_crd() -> None:
    assert (CHART / "crds" / CRD.name).read_text() == CRD.read_text()


def test_helm_lint_is_clean() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_helm_and_kustomize_grant_the_same(rendered: dict[str, list[Doc]], target: str, tmp_path: Path) -> None:
    """The same configuration gives the same RBAC rules, whatever the release is called."""
    for release, namespace in ((NAME, NAME), ("acme", "acme-system")):
        docs = helm_template(values_for(TARGETS[target]), tmp_path, release, namespace)
        account = NAME if release == NAME else f"{release}-{NAME}"
        assert rbac_grants(docs, account, namespace) == rbac_grants(rendered[target], NAME, NAME)


def test_helm_deployment_and_configuration(tmp_path: Path) -> None:
    docs = helm_template(None, tmp_path, "acme", "acme-system")
    check_deployment(find(docs, "Deployment"), f"acme-{NAME}")
    config = parse_configuration(config_of(docs))
    assert config.operator.leader_election.lease_name == f"acme-{NAME}"
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not [d for d in docs if d["kind"] == "PodMonitor"]


def test_helm_secret_grants_follow_the_configuration(tmp_path: Path) -> None:
    entries = [
        {"source": "a", "credentials": {"secretRef": {"name": "s1"}}},
        {"source": "b", "credentials": {"secretRef": {"name": "s2", "namespace": "vault"}}},
        {"source": "c", "enabled": False, "credentials": {"secretRef": {"name": "s3"}}},
    ]
    docs = helm_template({"config": {"networkTopologyDiscovery": entries}}, tmp_path)
    secrets = {g for g in rbac_grants(docs, NAME, NAME) if g.resource == "secrets"}
    assert secrets == {Grant(NAME, "", "secrets", "get", "s1"), Grant("vault", "", "secrets", "get", "s2")}


def test_helm_node_access_modes(tmp_path: Path) -> None:
    def nodes(values: Doc) -> bool:
        return rbac_grants(helm_template(values, tmp_path), NAME, NAME) >= NODE_GRANTS

    assert not nodes({})
    assert nodes({"config": {"operator": {"status": {"nodeCount": True}}}})
    assert nodes({"rbac": {"nodes": True}})
    assert not nodes({"rbac": {"nodes": False}, "config": {"networkTopologyDiscovery": [{"source": "label"}]}})
    assert not nodes({"config": {"networkTopologyDiscovery": [{"source": "label", "enabled": False}]}})


def test_helm_pod_monitor(tmp_path: Path) -> None:
    docs = helm_template({"podMonitor": {"enabled": True}}, tmp_path)
    assert find(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "health"


def fence_of(docs: list[Doc]) -> tuple[Doc, Doc] | None:
    found = [d for d in docs if d["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")]
    if not found:
        return None
    policy, binding = find(found, "ValidatingAdmissionPolicy"), find(found, "ValidatingAdmissionPolicyBinding")
    return policy, binding


def without_labels(doc: Doc) -> Doc:
    return {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "labels"}}


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_fences_the_lease_its_configuration_names(rendered: dict[str, list[Doc]], target: str) -> None:
    fenced = fence_of(rendered[target])
    assert fenced is not None
    policy, binding = fenced
    election = parse_configuration(config_of(rendered[target])).operator.leader_election
    assert election.enabled
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == fence.POLICY_NAME
    assert binding["spec"]["paramRef"] == {"name": election.lease_name, "namespace": NAME,
                                           "parameterNotFoundAction": "Allow"}  # fmt: skip
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert fence.TERM_ANNOTATION in json.dumps(policy["spec"]), "the key the writer sends (volcano_topology.fence)"


def test_helm_renders_the_fence_kustomize_ships_bound_to_its_own_lease(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    shipped = fence_of(rendered["deploy"])
    assert shipped is not None
    same = fence_of(helm_template(None, tmp_path))
    assert same is not None and [without_labels(d) for d in same] == [without_labels(d) for d in shipped]
    acme = fence_of(helm_template({"config": {"operator": {"leaderElection": {"leaseName": "acme-lease"}}}},
                                  tmp_path, "acme", "acme-system"))  # fmt: skip
    assert acme is not None
    policy, binding = acme
    assert policy["metadata"]["name"] == binding["spec"]["policyName"] == f"acme-{NAME}-writer-fence"
    assert binding["spec"]["paramRef"]["name"] == "acme-lease"
    assert binding["spec"]["paramRef"]["namespace"] == "acme-system"
    assert policy["spec"] == shipped[0]["spec"]


def test_helm_leaves_the_fence_out_without_leader_election_or_when_disabled(tmp_path: Path) -> None:
    assert fence_of(helm_template({"config": {"operator": {"leaderElection": {"enabled": False}}}}, tmp_path)) is None
    assert fence_of(helm_template({"writerFence": {"enabled": False}}, tmp_path)) is None


def test_an_overlay_can_leave_the_fence_out_as_deploy_readme_says(tmp_path: Path) -> None:
    deletes = [
        {"$patch": "delete", "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
         "metadata": {"name": fence.POLICY_NAME}}
        for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    ]  # fmt: skip
    overlay = {"resources": [os.path.relpath(DEPLOY, tmp_path)], "patches": [{"patch": yaml.safe_dump(d)}
                                                                            for d in deletes]}  # fmt: skip
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    docs = kustomize(tmp_path)
    assert fence_of(docs) is None
    assert {d["kind"] for d in docs} >= {"Deployment", "ClusterRole", "CustomResourceDefinition"}


def test_helm_leaves_the_fence_out_where_the_cluster_has_no_admission_policies(tmp_path: Path) -> None:
    """Kubernetes before 1.30 serves no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy."""

    def rendered_for(version: str) -> list[Doc]:
        result = helm("template", NAME, str(CHART), "--kube-version", version)
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]

    assert fence_of(rendered_for("1.29.9")) is None
    assert fence_of(rendered_for("1.30.0")) is not None


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicas": 2}, "replicas"),
        ({"rbac": {"nodes": "sometimes"}}, "nodes"),
        ({"config": {"networkTopologyDiscovery": [{"enabled": True}]}}, "source"),
        ({"image": {"repository": ""}}, "repository"),
    ],
)
def test_bad_values_fail_at_install_naming_the_field(values: Doc, named: str, tmp_path: Path) -> None:
    values_file = tmp_path / "bad.yaml"
    values_file.write_text(json.dumps(values))
    result = helm("template", NAME, str(CHART), "-f", str(values_file))
    assert result.returncode != 0
    assert named in result.stderr, result.stderr


def test_make_test_builds_helm_before_pytest() -> None:
    """A fresh machine has no helm: `make test` (what CI runs) must build it before any test starts."""
    result = subprocess.run(["make", "-n", "-o", ".venv/.installed", "test"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    lines = result.stdout.splitlines()
    tools = next(i for i, line in enumerate(lines) if "volcano_topology.controlplane.tools" in line)
    pytest_run = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert tools < pytest_run


# -- the image's recipe (built and run by `make image-test`, not in CI) -----------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_final_stage() -> None:
    preamble, build, final = dockerfile_stages()
    assert preamble == ["ARG BASE_IMAGE=python:3.11-slim-bookworm"]
    assert build[0] == "FROM ${BASE_IMAGE} AS build" and final[0] == "FROM ${BASE_IMAGE}"
    assert any(line.startswith("ARG PROVIDERS=") for line in build)
    # Nothing is installed or built in the final stage: it only copies the build stage's virtualenv.
    runs = [line for line in final if line.startswith("RUN ")]
    assert all("pip" not in run and "apt" not in run for run in runs), runs
    assert [line for line in final if line.startswith("COPY ")] == [
        "COPY --from=build /opt/volcano-topology /opt/volcano-topology"
    ]
    assert [line for line in final if line.startswith("USER ")] == ["USER 65532:65532"]
    labels = " ".join(line for line in final if line.startswith("LABEL "))
    for key in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :][:7] == [
        "!pyproject.toml", "!README.md", "!LICENSE", "!crds/", "!volcano_topology/", "!providers/", "**/__pycache__/",
    ]  # fmt: skip
    sources = {part.rstrip("/") for stage in dockerfile_stages() for line in stage
               if line.startswith("COPY ") and "--from" not in line for part in line.split()[1:-1]}  # fmt: skip
    assert sources == {"pyproject.toml", "README.md", "LICENSE", "crds", "volcano_topology", "providers"}
