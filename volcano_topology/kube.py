"""The only module that talks to the Kubernetes API server.

Clients are built with the official client's own retries off: retrying is the
writer's job (one tenacity layer), and stacked retries would multiply.
"""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from volcano_topology.api import GROUP, PLURAL

CRD_FILE = "hypernodes.topology.volcano.sh.yaml"
CRD_NAME = f"{PLURAL}.{GROUP}"
FIELD_MANAGER = "volcano-topology"


def api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> client.ApiClient:
    """From ``kubeconfig`` (or ``$KUBECONFIG``/``~/.kube/config``), else the in-cluster ServiceAccount."""
    configuration = client.Configuration()
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


__all__ = ["CRD_NAME", "FIELD_MANAGER", "ApiException", "api_client", "apply_crd", "crd_manifest"]
