"""A test provider as a vendor would write one: re-reads a CSV file of ``rack,node`` rows.

Each rack becomes a leaf (tier 1) and all racks hang under one spine (tier 2).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel

from volcano_topology.api import HyperNode, HyperNodeSpec, Member, ObjectMeta
from volcano_topology.sdk import ScanningProvider


class CsvSettings(BaseModel):
    file: str
    spine: str = "spine-0"


class CsvProvider(ScanningProvider):
    settings_model = CsvSettings
    settings: CsvSettings
    interval = 0.2

    def scan(self) -> list[HyperNode]:
        racks: dict[str, list[str]] = {}
        with Path(self.settings.file).open() as rows:
            for rack, node in csv.reader(rows):
                racks.setdefault(rack.strip(), []).append(node.strip())
        leaves = [
            HyperNode(
                metadata=ObjectMeta(name=rack), spec=HyperNodeSpec(tier=1, members=[Member.node(n) for n in nodes])
            )
            for rack, nodes in sorted(racks.items())
        ]
        spine = HyperNode(
            metadata=ObjectMeta(name=self.settings.spine),
            spec=HyperNodeSpec(tier=2, members=[Member.hypernode(leaf.name) for leaf in leaves]),
        )
        return [*leaves, spine]
