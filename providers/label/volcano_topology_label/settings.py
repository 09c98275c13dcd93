"""The provider's ``config`` block: Volcano's label-source configuration, plus two settings of ours.

Volcano's shape is kept as is (``networkTopologyTypes: {<type>: [{nodeLabel: ...}, ...]}``,
labels from the top tier down, the last one the node-name label), so an entry of Volcano's
``networkTopologyDiscovery`` list moves over unchanged. Volcano logs a bad type and skips it;
here a bad configuration is refused as a whole with an error naming the type and the field,
because a silently skipped type would delete that type's HyperNodes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from volcano_topology import kubenames
from volcano_topology.config import Duration
from volcano_topology.sdk import naming

# Volcano refuses longer type names (its networkTopologyTypeLength); keeping its limit keeps
# every configuration Volcano accepts valid here, and leaves room in 63-character names.
MAX_TYPE_NAME = 20


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid", frozen=True)


class Level(_Model):
    """One entry of a type's list: the Node label whose value names the HyperNode at this tier."""

    node_label: str = Field(min_length=1)

    @field_validator("node_label")
    @classmethod
    def _label_key(cls, value: str) -> str:
        if problems := kubenames.qualified_name_problems(value):
            raise ValueError(f"{value!r} is not a valid label key: {problems[0]}")
        return value


class LabelSettings(_Model):
    """``networkTopologyTypes`` as Volcano reads it; ``missingLabels``, ``debounce`` and ``maxDelay`` are ours."""

    network_topology_types: dict[str, list[Level]] = Field(min_length=1)
    # What a node that lacks one of its type's tier labels does (see the README).
    missing_labels: Literal["skip", "attachAbove"] = "skip"
    # Node changes are coalesced: a new snapshot is built once no Node changed for `debounce`,
    # or `maxDelay` after the first change of a burst, whichever comes first.
    debounce: Duration = 1.0
    max_delay: Duration = 10.0

    @field_validator("network_topology_types")
    @classmethod
    def _types(cls, types: dict[str, list[Level]]) -> dict[str, list[Level]]:
        prefixes: dict[str, str] = {}
        for name, levels in types.items():
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
            if len(levels) < 2:
                raise ValueError(
                    f"type {name!r}: list at least one tier label and then the node-name label "
                    "(e.g. kubernetes.io/hostname) last"
                )
            keys = [level.node_label for level in levels]
            if duplicated := sorted({k for k in keys if keys.count(k) > 1}):
                raise ValueError(f"type {name!r}: label {duplicated[0]} is listed twice")
        return types

    @model_validator(mode="after")
    def _delays(self) -> LabelSettings:
        if self.max_delay < self.debounce:
            raise ValueError(f"maxDelay ({self.max_delay:g}s) must be at least debounce ({self.debounce:g}s)")
        return self

    def tiers(self, type_name: str) -> list[str]:
        """The tier label keys of a type, top tier first; the last entry (the node-name label) is not a tier."""
        return [level.node_label for level in self.network_topology_types[type_name][:-1]]
