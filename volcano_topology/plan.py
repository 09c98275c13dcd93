"""Desired HyperNodes vs. what the cluster has -> ordered operations. Pure: no I/O.

Order (Volcano's scheduler reads HyperNodes while they change):

1. creates and updates, children before parents (by tree height); within one height,
   updates that only release node members go before those that claim them, so a node
   moving between leaves is never in two at once;
2. deletes last, parents before children, so no HyperNode ever references a deleted one.

Ownership: only objects carrying both ownership labels for this provider are updated
or deleted; any other object under a desired name is a conflict, never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from volcano_topology import ownership
from volcano_topology.api import HyperNode, ObjectMeta
from volcano_topology.tree import levels


@dataclass(frozen=True)
class Observed:
    """One HyperNode as the API server has it, reduced to what planning needs."""

    name: str
    owner: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: Mapping[str, Any] | None
    resource_version: str
    uid: str
    # label and annotation keys each field manager owns, from managedFields
    managed_keys: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    hypernode: HyperNode | None = None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Observed:
        metadata = obj.get("metadata") or {}
        labels = dict(metadata.get("labels") or {})
        managed: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        for entry in metadata.get("managedFields") or []:
            fields = ((entry.get("fieldsV1") or {}).get("f:metadata")) or {}
            keys = (_keys(fields.get("f:labels")), _keys(fields.get("f:annotations")))
            previous = managed.get(entry.get("manager", ""), (frozenset(), frozenset()))
            managed[entry.get("manager", "")] = (previous[0] | keys[0], previous[1] | keys[1])
        try:
            parsed: HyperNode | None = HyperNode.model_validate(dict(obj))
        except ValueError:
            parsed = None  # someone else's object, or one written before today's rules
        return cls(
            name=metadata.get("name", ""),
            owner=ownership.owner_of(labels),
            labels=labels,
            annotations=dict(metadata.get("annotations") or {}),
            spec=obj.get("spec"),
            resource_version=metadata.get("resourceVersion", ""),
            uid=metadata.get("uid", ""),
            managed_keys=managed,
            hypernode=parsed,
        )


def _keys(fields: Mapping[str, Any] | None) -> frozenset[str]:
    return frozenset(key.removeprefix("f:") for key in (fields or {}) if key.startswith("f:"))


@dataclass(frozen=True)
class Create:
    hypernode: HyperNode

    @property
    def name(self) -> str:
        return self.hypernode.name


@dataclass(frozen=True)
class Update:
    hypernode: HyperNode
    observed: Observed

    @property
    def name(self) -> str:
        return self.hypernode.name


@dataclass(frozen=True)
class Delete:
    observed: Observed

    @property
    def name(self) -> str:
        return self.observed.name


Operation = Create | Update | Delete


@dataclass(frozen=True)
class Conflict:
    name: str
    owner: str  # who holds the object instead ("another provider x" or "not volcano-topology")


@dataclass
class Plan:
    waves: list[list[Operation]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def operations(self) -> list[Operation]:
        return [op for wave in self.waves for op in wave]

    def counts(self) -> dict[str, int]:
        ops = self.operations
        return {
            "create": sum(isinstance(op, Create) for op in ops),
            "update": sum(isinstance(op, Update) for op in ops),
            "delete": sum(isinstance(op, Delete) for op in ops),
            "unchanged": len(self.unchanged),
        }


def with_ownership(hypernode: HyperNode, provider: str) -> HyperNode:
    """The object as written: the provider's labels with both ownership labels forced on top."""
    metadata = hypernode.metadata
    labels = {**(metadata.labels or {}), **ownership.ownership_labels(provider)}
    meta = ObjectMeta(name=metadata.name, labels=labels, annotations=metadata.annotations or None)
    return hypernode.model_copy(update={"metadata": meta, "status": None})


def matches(desired: HyperNode, observed: Observed, manager: str) -> bool:
    """True when applying ``desired`` would change nothing this manager owns."""
    if dict(observed.spec or {}) != (desired.spec.to_dict() if desired.spec else {}):
        return False
    owned_labels, owned_annotations = observed.managed_keys.get(manager, (frozenset(), frozenset()))
    for wanted, have, owned in (
        (desired.metadata.labels or {}, observed.labels, owned_labels),
        (desired.metadata.annotations or {}, observed.annotations, owned_annotations),
    ):
        if any(have.get(key) != value for key, value in wanted.items()):
            return False
        if owned - set(wanted):  # a key we set earlier and no longer want: apply removes it
            return False
    return True


def describe_owner(observed: Observed) -> str:
    if observed.owner is not None:
        return f"provider {observed.owner}"
    source = observed.labels.get(ownership.SOURCE_LABEL)
    return f"{source} (not managed by volcano-topology)" if source else "an object not managed by volcano-topology"


def plan_changes(
    provider: str,
    desired: Mapping[str, HyperNode],
    observed: Mapping[str, Observed],
    *,
    delete: Iterable[str] = (),
) -> Plan:
    """Operations that make the cluster hold ``desired`` (already carrying ownership labels).

    ``delete`` names this provider's objects to remove; names it does not own are ignored
    (deleting what is not ours, or what is already gone, needs no request).
    """
    manager = ownership.field_manager(provider)
    plan = Plan()
    applies: list[Create | Update] = []
    for name in sorted(desired):
        hypernode = desired[name]
        current = observed.get(name)
        if current is None:
            applies.append(Create(hypernode))
        elif current.owner != provider:
            plan.conflicts.append(Conflict(name, describe_owner(current)))
        elif matches(hypernode, current, manager):
            plan.unchanged.append(name)
        else:
            applies.append(Update(hypernode, current))

    height = levels(desired)
    for level in sorted({height[op.name] for op in applies}):
        at_level = [op for op in applies if height[op.name] == level]
        releasing: list[Operation] = [op for op in at_level if isinstance(op, Update) and _only_releases(op)]
        claiming: list[Operation] = [op for op in at_level if op not in releasing]
        plan.waves.extend(wave for wave in (releasing, claiming) if wave)

    deletes = [observed[n] for n in sorted(set(delete)) if n in observed and observed[n].owner == provider]
    if deletes:
        current_owned = {o.name: o.hypernode for o in observed.values() if o.owner == provider and o.hypernode}
        depth = levels(current_owned)
        for level in sorted({depth.get(o.name, 0) for o in deletes}, reverse=True):
            plan.waves.append([Delete(o) for o in deletes if depth.get(o.name, 0) == level])
    return plan


def _only_releases(update: Update) -> bool:
    """The update removes members and adds none."""
    old = update.observed.hypernode
    if old is None:
        return False
    before = {m.model_dump_json() for m in old.members}
    after = {m.model_dump_json() for m in update.hypernode.members}
    return after < before


@dataclass(frozen=True)
class DeletionGuard:
    """Refuses snapshots that would delete too much of what a provider owns."""

    max_delete_fraction: float = 0.5
    allow_empty: bool = False

    def refusal(self, owned: int, deleting: int, desired: int) -> str | None:
        if owned == 0 or deleting == 0:
            return None
        if desired == 0:
            if self.allow_empty:
                return None
            return f"the snapshot is empty and would delete all {owned} HyperNodes this provider owns"
        if deleting / owned > self.max_delete_fraction:
            return (
                f"the snapshot would delete {deleting} of {owned} HyperNodes this provider owns "
                f"({deleting / owned:.0%}), more than the allowed {self.max_delete_fraction:.0%}"
            )
        return None
