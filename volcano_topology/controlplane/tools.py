"""Find or build the command-line tools the deployment tests need (today: Helm).

The same mechanism as the control plane (:mod:`volcano_topology.controlplane.build`): a pinned
version, built from its Go module with the machine's Go toolchain into
``$VOLCANO_TOPOLOGY_CACHE/tools/<name>-<version>/<name>`` atomically under a file lock, so a
fresh machine builds it once (``make tools``, which ``make test`` runs before pytest) and a test
never builds anything where a timeout could cut the build short.

``VOLCANO_TOPOLOGY_HELM`` names a prebuilt ``helm`` instead; then nothing is built.

Run ``python -m volcano_topology.controlplane.tools`` to build every tool and print their paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from volcano_topology.controlplane.build import BuildError, Progress, _build_module, _locked, _log_progress, cache_root

HELM_VERSION = "v3.22.0"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
# The Kubernetes version helm assumes offline (`helm template`, `helm lint`), as helm's Makefile derives
# it from its client-go (v0.37.0 in helm v3.22.0): unset, it assumes v1.20.
HELM_KUBE_MINOR = "37"


def helm_path() -> Path:
    """Where the cached helm binary lives (whether or not it is built yet)."""
    return cache_root() / "tools" / f"helm-{HELM_VERSION}" / "helm"


def ensure_helm(*, build: bool = True, progress: Progress | None = None) -> Path:
    """A usable ``helm``: ``$VOLCANO_TOPOLOGY_HELM``, else the cache, built there when missing.

    With ``build=False`` a missing binary is a ``BuildError`` naming the command that builds it.
    """
    explicit = os.environ.get("VOLCANO_TOPOLOGY_HELM")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BuildError(f"VOLCANO_TOPOLOGY_HELM={explicit} is missing or not executable")
        return Path(explicit)
    target = helm_path()
    if target.exists():
        return target
    if not build:
        raise BuildError(
            f"{target} is not built yet: run `make tools` (`make test` does), "
            "or set VOLCANO_TOPOLOGY_HELM to a helm binary"
        )
    with _locked(target.parent):
        if not target.exists():  # another process may have built it while we waited
            go_mod = f"module volcano-topology.local/helm\n\ngo 1.26\n\nrequire helm.sh/helm/v3 {HELM_VERSION}\n"
            # The stamps helm's own Makefile sets: the version `helm version` prints, the assumed Kubernetes.
            ldflags = " ".join(
                [
                    "-s -w",
                    f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
                    *(f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersionMajor=1" for pkg in ("chartutil", "lint/rules")),
                    *(
                        f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersionMinor={HELM_KUBE_MINOR}"
                        for pkg in ("chartutil", "lint/rules")
                    ),
                ]
            )
            _build_module("helm", go_mod, HELM_PACKAGE, HELM_VERSION, target, progress or _log_progress, ldflags)
    return target


def main() -> int:
    try:
        print(ensure_helm(progress=lambda line: print(line, file=sys.stderr, flush=True)))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
