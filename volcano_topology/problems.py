"""A problem found in a HyperNode: where, which rule, and who enforces that rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# schema: the API server rejects it (CRD OpenAPI and CEL, object metadata).
# admission: Volcano's admission policy and webhook reject it.
# topology: the scheduler's tree assumptions over a whole set of HyperNodes.
Level = Literal["schema", "admission", "topology"]


@dataclass(frozen=True)
class Problem:
    path: str
    rule: str
    message: str
    level: Level
    name: str | None = None  # the HyperNode concerned, when the problem is found in a set of them

    def __str__(self) -> str:
        where = f"HyperNode {self.name}: {self.path}" if self.name else self.path
        return f"{where}: {self.message} [{self.level}: {self.rule}]"


def join_path(*parts: str | int) -> str:
    """``("spec", "members", 0, "type")`` -> ``spec.members[0].type``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
