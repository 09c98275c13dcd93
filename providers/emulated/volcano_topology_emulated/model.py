"""The fabric model: switches, the nodes under them, scripted changes, injected faults.

```yaml
tierNames: {1: leaf, 2: spine}
switches:
  - name: spine-0
  - name: leaf-0
    parents: [spine-0]
    nodes: ["gpu[001-004]"]          # ranges; a node under several leaves is on several rails
changes:                             # seconds since the provider started
  - {at: 30, moveNode: {node: gpu001, to: leaf-1}}
  - {at: 60, addSwitch: {name: leaf-2, parents: [spine-0], nodes: ["gpu[009-012]"]}}
  - {at: 90, removeSwitch: leaf-2}
  - {at: 100, flap: {switch: leaf-1, period: 5, count: 4}}
faults:                              # every Nth scan
  slowScan: {every: 3, seconds: 5}
  raiseScan: {every: 4}
  garbage: {every: 5, kind: two-leaves}   # or invalid-name, not-hypernodes
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from volcano_topology.sdk.tree import TreeBuilder
from volcano_topology_emulated.ranges import expand


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid")


class SwitchSpec(_Model):
    name: str = Field(min_length=1)
    parents: list[str] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)
    tier: int | None = Field(None, ge=1)
    tier_name: str | None = None

    def node_names(self) -> list[str]:
        return [name for pattern in self.nodes for name in expand(pattern)]


class MoveNode(_Model):
    node: str
    to: str


class Flap(_Model):
    switch: str
    period: float = Field(gt=0)
    count: int = Field(2, ge=1)


class Change(_Model):
    at: float = Field(ge=0)
    move_node: MoveNode | None = None
    add_switch: SwitchSpec | None = None
    remove_switch: str | None = None
    restore_switch: str | None = None  # back as it was just before it was removed
    flap: Flap | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Change:
        kinds = ("move_node", "add_switch", "remove_switch", "restore_switch", "flap")
        if sum(getattr(self, k) is not None for k in kinds) != 1:
            raise ValueError(
                f"a change at {self.at}s needs exactly one of moveNode, addSwitch, removeSwitch, restoreSwitch, flap"
            )
        return self


class Every(_Model):
    every: int = Field(ge=1)


class SlowScan(Every):
    seconds: float = Field(gt=0)


class Garbage(Every):
    kind: Literal["invalid-name", "two-leaves", "not-hypernodes"] = "two-leaves"


class Faults(_Model):
    slow_scan: SlowScan | None = None
    raise_scan: Every | None = None
    garbage: Garbage | None = None


class FabricModel(_Model):
    tier_names: dict[int, str] = Field(default_factory=dict)
    name_prefix: str = ""
    switches: list[SwitchSpec] = Field(min_length=1)
    changes: list[Change] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)
    node_labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> FabricModel:
        declared = {s.name for s in self.switches} | {c.add_switch.name for c in self.changes if c.add_switch}
        for switch in self.switches:
            switch.node_names()  # a bad range fails here, naming the pattern
            for parent in switch.parents:
                if parent not in declared:
                    raise ValueError(f"switch {switch.name}: parent {parent} is not declared")
        for change in self.changes:
            target = (
                (change.move_node.to if change.move_node else None)
                or change.remove_switch
                or change.restore_switch
                or (change.flap.switch if change.flap else None)
            )
            if target is not None and target not in declared:
                raise ValueError(f"change at {change.at}s: switch {target} is not declared")
        return self

    @classmethod
    def load(cls, path: str | Path) -> FabricModel:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    def timeline(self) -> list[tuple[float, Change]]:
        """Changes in time order, flaps unrolled into remove/restore pairs."""
        steps: list[tuple[float, Change]] = []
        for change in self.changes:
            if change.flap is None:
                steps.append((change.at, change))
                continue
            for toggle in range(change.flap.count):
                at = change.at + toggle * change.flap.period
                kind = "remove_switch" if toggle % 2 == 0 else "restore_switch"
                steps.append((at, Change.model_validate({"at": at, kind: change.flap.switch})))
        return sorted(steps, key=lambda step: step[0])

    def all_nodes(self) -> list[str]:
        """Every node the model ever mentions (for creating Node objects)."""
        names = {n for s in self.switches for n in s.node_names()}
        names |= {n for c in self.changes if c.add_switch for n in c.add_switch.node_names()}
        names |= {c.move_node.node for c in self.changes if c.move_node}
        return sorted(names)


@dataclass
class FabricState:
    """The fabric at one moment: switch -> parents, switch -> nodes."""

    parents: dict[str, set[str]] = field(default_factory=dict)
    nodes: dict[str, set[str]] = field(default_factory=dict)
    tiers: dict[str, int | None] = field(default_factory=dict)
    removed: dict[str, tuple[set[str], set[str], int | None, set[str]]] = field(default_factory=dict)

    @classmethod
    def at(cls, model: FabricModel, seconds: float) -> FabricState:
        state = cls()
        for switch in model.switches:
            state.add(switch)
        for at, change in model.timeline():
            if at > seconds:
                break
            state.apply(change)
        return state

    def add(self, switch: SwitchSpec) -> None:
        self.parents[switch.name] = set(switch.parents)
        self.nodes[switch.name] = set(switch.node_names())
        self.tiers[switch.name] = switch.tier

    def apply(self, change: Change) -> None:
        if change.add_switch is not None:
            self.add(change.add_switch)
        elif change.remove_switch is not None:
            name = change.remove_switch
            if name not in self.parents:
                return
            children = {child for child, parents in self.parents.items() if name in parents}
            self.removed[name] = (self.parents.pop(name), self.nodes.pop(name, set()), self.tiers.pop(name), children)
            for parents in self.parents.values():
                parents.discard(name)
        elif change.restore_switch is not None and change.restore_switch in self.removed:
            name = change.restore_switch
            parents, nodes, tier, children = self.removed.pop(name)
            taken = {n for held in self.nodes.values() for n in held}
            self.parents[name] = parents
            self.nodes[name] = nodes - taken  # nodes moved away meanwhile stay where they are
            self.tiers[name] = tier
            for child in children & set(self.parents):
                self.parents[child].add(name)
        elif change.move_node is not None:
            for nodes in self.nodes.values():
                nodes.discard(change.move_node.node)
            self.nodes.setdefault(change.move_node.to, set()).add(change.move_node.node)

    def tree(self, model: FabricModel) -> TreeBuilder:
        builder = TreeBuilder(tier_names=model.tier_names, name_prefix=model.name_prefix)
        for name in sorted(self.parents):
            builder.switch(
                name, parents=sorted(p for p in self.parents[name] if p in self.parents), tier=self.tiers[name]
            )
            if self.nodes.get(name):
                builder.attach(name, *sorted(self.nodes[name]))
        # The model's meaning: a node under several leaves is on several rails (one per leaf).
        homes: dict[str, list[str]] = {}
        for name in sorted(self.parents):
            for node in self.nodes.get(name, ()):
                homes.setdefault(node, []).append(name)
        for switches in {tuple(found) for found in homes.values() if len(found) > 1}:
            builder.rails(*switches)
        return builder


def node_manifests(model: FabricModel) -> list[dict[str, Any]]:
    """Node objects for a fully emulated cluster (``volcano-topology dev`` creates them)."""
    labels = {"volcano-topology.io/emulated": "true", **model.node_labels}
    return [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}} for name in model.all_nodes()
    ]
