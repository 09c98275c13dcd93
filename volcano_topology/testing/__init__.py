"""A test kit for provider authors (also a pytest plugin: see :mod:`volcano_topology.testing.plugin`).

Three ways to look at a provider, each with the framework's own machinery:

- :func:`run_offline` (or ``await discover_provider(...)``) runs it once with no cluster, the way
  ``volcano-topology discover`` does, and returns every event it sent plus the HyperNodes the
  writer would write and every problem the writer's checks would find.
- :func:`run_on_cluster` (or ``await apply_provider(...)``) runs it through the real writer
  against a real API server (the ``vt_control_plane`` fixture) and returns the objects the
  API server holds and the replies the provider was sent.
- :func:`assert_strict_tree` fails with every strict-tree problem (one home per node, one
  parent per HyperNode, no missing child, parents above children) named.

The ``vt_control_plane`` fixture is a session-wide kube-apiserver + etcd on loopback with the
HyperNode CRD installed. It never builds binaries: run ``volcano-topology control-plane build``
once first (or set ``KUBEBUILDER_ASSETS``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from volcano_topology.testing.kit import (
        BUILD_HINT,
        Applied,
        ControlPlaneUnavailable,
        Offline,
        apply_provider,
        assert_no_problems,
        assert_strict_tree,
        discover_provider,
        run_offline,
        run_on_cluster,
        start_control_plane,
    )

__all__ = [
    "BUILD_HINT",
    "Applied",
    "ControlPlaneUnavailable",
    "Offline",
    "apply_provider",
    "assert_no_problems",
    "assert_strict_tree",
    "discover_provider",
    "run_offline",
    "run_on_cluster",
    "start_control_plane",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the pytest plugin is imported by every pytest run where volcano-topology is
    # installed, and should not import the Kubernetes client for tests that never use the kit.
    if name in __all__:
        return getattr(importlib.import_module("volcano_topology.testing.kit"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
