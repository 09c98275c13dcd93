"""The provider's ``config`` block: Volcano's label-source configuration, plus settings of ours.

Volcano's shapes are kept as they are, so an entry of Volcano's ``networkTopologyDiscovery``
list moves over unchanged. A type is either

- the list form, ``<type>: [{nodeLabel: ...}, ...]``: labels from the top tier down, the last
  one the node-name label; or
- the profile form, ``<type>: {nodeSelector: {matchLabels: {...}}, levels: [{nodeLabel: ...,
  tierName: ...}, ...]}``: the same list under ``levels``, each level with an optional
  ``tierName`` (default: its ``nodeLabel``), and a selector naming the nodes of this type.

Volcano logs a bad type and skips it; here a bad configuration is refused as a whole with an
error naming the type and the field, because a silently skipped type would delete that type's
HyperNodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from volcano_topology import kubenames
from volcano_topology.config import Duration
from volcano_topology.sdk import naming

# Volcano refuses longer type names (its networkTopologyTypeLength); keeping its limit keeps
# every configuration Volcano accepts valid here, and leaves room in 63-character names.
MAX_TYPE_NAME = 20
MAX_TIER_NAME = 253  # the CRD's limit on tierName


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid", frozen=True)


def _label_key(value: str) -> str:
    if problems := kubenames.qualified_name_problems(value):
        raise ValueError(f"{value!r} is not a valid label key: {problems[0]}")
    return value


class Level(_Model):
    """One level: the Node label whose value names the HyperNode at this tier, and the tier's name."""

    node_label: str = Field(min_length=1)
    tier_name: str | None = Field(None, min_length=1, max_length=MAX_TIER_NAME)  # default: node_label

    @field_validator("node_label")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        return _label_key(value)


class NodeSelector(_Model):
    match_labels: dict[str, str] = Field(min_length=1)

    @field_validator("match_labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            _label_key(key)
            if problems := kubenames.label_value_problems(value):
                raise ValueError(f"{key}={value!r}: not a valid label value: {problems[0]}")
        return labels

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items())


class Profile(_Model):
    """The profile form of a type: the nodes it applies to, and its levels."""

    node_selector: NodeSelector | None = None
    levels: list[Level]


class LabelSettings(_Model):
    """``networkTopologyTypes`` as Volcano reads it; ``missingLabels``, ``debounce`` and ``maxDelay`` are ours."""

    network_topology_types: dict[str, list[Level] | Profile] = Field(min_length=1)
    # What a node that lacks one of its type's tier labels does (see the README).
    missing_labels: Literal["skip", "attachAbove"] = "skip"
    # Node changes are coalesced: a new snapshot is built once no Node changed for `debounce`,
    # or `maxDelay` after the first change of a burst, whichever comes first.
    debounce: Duration = 1.0
    max_delay: Duration = 10.0

    @field_validator("network_topology_types")
    @classmethod
    def _types(cls, types: dict[str, list[Level] | Profile]) -> dict[str, list[Level] | Profile]:
        prefixes: dict[str, str] = {}
        for name, declared in types.items():
            if not name or len(name) > MAX_TYPE_NAME:
                raise ValueError(f"type {name!r}: a type name has 1 to {MAX_TYPE_NAME} characters (as in Volcano)")
            prefix = naming.sanitize(name)
            if not prefix:
                raise ValueError(f"type {name!r}: needs at least one letter or digit (it starts every HyperNode name)")
            if prefix in prefixes:
                raise ValueError(
                    f"types {prefixes[prefix]!r} and {name!r}: both give HyperNode names starting {prefix}-; rename one"
                )
            prefixes[prefix] = name
            levels = declared.levels if isinstance(declared, Profile) else declared
            if len(levels) < 2:
                raise ValueError(
                    f"type {name!r}: list at least one tier label and then the node-name label "
                    "(e.g. kubernetes.io/hostname) last"
                )
            keys = [level.node_label for level in levels]
            if duplicated := sorted({k for k in keys if keys.count(k) > 1}):
                raise ValueError(f"type {name!r}: label {duplicated[0]} is listed twice")
            tier_names = [level.tier_name or level.node_label for level in levels[:-1]]
            if duplicated := sorted({t for t in tier_names if tier_names.count(t) > 1}):
                raise ValueError(f"type {name!r}: duplicate tierName {duplicated[0]}")
        return types

    @model_validator(mode="after")
    def _delays(self) -> LabelSettings:
        if self.max_delay < self.debounce:
            raise ValueError(f"maxDelay ({self.max_delay:g}s) must be at least debounce ({self.debounce:g}s)")
        return self

    def levels(self, type_name: str) -> list[Level]:
        declared = self.network_topology_types[type_name]
        return declared.levels if isinstance(declared, Profile) else declared

    def tiers(self, type_name: str) -> list[str]:
        """The tier label keys of a type, top tier first; the last entry (the node-name label) is not a tier."""
        return [level.node_label for level in self.levels(type_name)[:-1]]

    def tier_names(self, type_name: str) -> list[str]:
        """Each tier's ``tierName``, top tier first: its ``tierName`` if given, else its label key (as Volcano)."""
        return [level.tier_name or level.node_label for level in self.levels(type_name)[:-1]]

    def selector(self, type_name: str) -> NodeSelector | None:
        declared = self.network_topology_types[type_name]
        return declared.node_selector if isinstance(declared, Profile) else None

    def is_profile(self, type_name: str) -> bool:
        return isinstance(self.network_topology_types[type_name], Profile)
