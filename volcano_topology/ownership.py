"""Who owns a HyperNode: Volcano's source label plus our managed-by label, both required."""

from __future__ import annotations

from collections.abc import Mapping

SOURCE_LABEL = "volcano.sh/network-topology-source"  # Volcano's own key
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "volcano-topology"
FIELD_MANAGER_PREFIX = "volcano-topology"


def ownership_labels(provider: str) -> dict[str, str]:
    return {SOURCE_LABEL: provider, MANAGED_BY_LABEL: MANAGED_BY}


def owner_of(labels: Mapping[str, str] | None) -> str | None:
    """The provider that owns an object with these labels, or None when volcano-topology does not own it."""
    labels = labels or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    return labels.get(SOURCE_LABEL) or None


def field_manager(provider: str) -> str:
    """One server-side-apply field manager per provider, so two providers never share field ownership."""
    return f"{FIELD_MANAGER_PREFIX}/{provider}"


def status_manager(provider: str) -> str:
    """Status is written under a manager of its own, so spec applies and status applies never strip each other."""
    return f"{FIELD_MANAGER_PREFIX}/{provider}/status"
