"""Helpers of the operator-fault scenarios (test_operator_faults.py): models, desired state, write bounds.

Everything here is computed independently of the writer's planner: the desired objects are the
emulated provider's own scan with the ownership labels, and the write bound of a transition is
counted from the objects as listed (one write per object that is not yet right, two when it loses
members: the planner may release before it claims).
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from volcano_topology_emulated.model import FabricModel, FabricState
from volcano_topology_emulated.provider import MODELS
from volcano_topology_emulated.ranges import expand

from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.plan import with_ownership
from volcano_topology.tree import moment_problems

SOURCE = "emulated"
HYPERNODES = f"/apis/{GROUP}/{VERSION}/{PLURAL}"

# -- models ------------------------------------------------------------------------------------


def shipped(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    return loaded


def write_model(path: Path, model: dict[str, Any]) -> Path:
    """Atomically (a rename), so a provider watching the file never reads half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(model, sort_keys=False, width=200))
    tmp.replace(path)
    return path


def variant(base: dict[str, Any], rng: random.Random, *, share: tuple[float, float] = (0.2, 0.5), remove: bool = True,
            new_leaves: int = 0) -> dict[str, Any]:  # fmt: skip
    """``base`` with a seeded rearrangement: nodes moved round a cycle of a ``share`` of the leaves (so leaves
    lose and gain nodes at once), one or two leaves moved to another spine, maybe one leaf removed
    (``remove``), and ``new_leaves`` leaves of new nodes added."""
    model = copy.deepcopy(base)
    leaves = [s for s in model["switches"] if s.get("nodes")]
    spines = sorted({p for leaf in leaves for p in leaf.get("parents", [])})
    members = {leaf["name"]: [n for pattern in leaf["nodes"] for n in expand(pattern)] for leaf in leaves}
    original = {name: list(nodes) for name, nodes in members.items()}
    cycle = rng.sample(leaves, max(2, int(len(leaves) * rng.uniform(*share))))
    for i, leaf in enumerate(cycle):
        target = cycle[(i + 1) % len(cycle)]["name"]
        for node in rng.sample(original[leaf["name"]], rng.randint(1, 3)):
            members[leaf["name"]].remove(node)
            members[target].append(node)
    others = [leaf for leaf in leaves if leaf not in cycle]
    for leaf in rng.sample(others, min(len(others), rng.randint(1, 2))):
        leaf["parents"] = [rng.choice([s for s in spines if s not in leaf["parents"]])]
    removed: set[str] = set()
    if remove and others and rng.random() < 0.5:
        removed.add(rng.choice(others)["name"])
    for leaf in leaves:
        if members[leaf["name"]] != original[leaf["name"]]:
            leaf["nodes"] = sorted(members[leaf["name"]])
    model["switches"] = [s for s in model["switches"] if s["name"] not in removed]
    for i in range(new_leaves):
        model["switches"].append({"name": f"leaf-new-{i:03d}", "parents": [rng.choice(spines)],
                                  "nodes": [f"new{i:03d}-[1-4]"]})  # fmt: skip
    return model


def desired(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the operator must write for ``model``: the emulated provider's scan, with the ownership labels."""
    fabric = FabricModel.model_validate(model)
    built = FabricState.at(fabric, 0).tree(fabric).build()
    return {h.name: with_ownership(h, SOURCE).to_dict() for h in built}


# -- the cluster as listed ---------------------------------------------------------------------


def owned(api: client.ApiClient) -> dict[str, dict[str, Any]]:
    """This source's HyperNodes (both ownership labels), by name."""
    listed: Any = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    items: list[dict[str, Any]] = listed["items"]
    return {i["metadata"]["name"]: i for i in items if ownership.owner_of(i["metadata"].get("labels")) == SOURCE}


def delete_owned(api: client.ApiClient) -> None:
    selector = ",".join(f"{k}={v}" for k, v in ownership.ownership_labels(SOURCE).items())
    objects = client.CustomObjectsApi(api)
    objects.delete_collection_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=selector)
    deadline = time.monotonic() + 30
    while owned(api):
        assert time.monotonic() < deadline, "owned HyperNodes not deleted"
        time.sleep(0.2)


def _subset(wanted: dict[str, str] | None, have: dict[str, str] | None) -> bool:
    return all((have or {}).get(k) == v for k, v in (wanted or {}).items())


def spec_right(obj: dict[str, Any], want: dict[str, Any]) -> bool:
    meta, wanted = obj["metadata"], want["metadata"]
    return (
        obj.get("spec") == want["spec"]
        and _subset(wanted.get("labels"), meta.get("labels"))
        and _subset(wanted.get("annotations"), meta.get("annotations"))
    )


def status_right(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    synced = next((c for c in conditions if c.get("type") == "Synced"), None)
    return (
        synced is not None
        and synced.get("status") == "True"
        and synced.get("observedGeneration") == obj["metadata"].get("generation")
    )


def problems(have: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> list[str]:
    """Empty when ``have`` is exactly ``want``: the same names, each spec and labels, Synced at its generation."""
    found = [f"missing {n}" for n in sorted(set(want) - set(have))]
    found += [f"extra {n}" for n in sorted(set(have) - set(want))]
    for name in sorted(set(want) & set(have)):
        if not spec_right(have[name], want[name]):
            found.append(f"{name}: spec or labels differ")
        elif not status_right(have[name]):
            found.append(f"{name}: not Synced at its generation")
    return found


def _members(spec: dict[str, Any] | None) -> set[str]:
    return {json.dumps(m, sort_keys=True) for m in (spec or {}).get("members") or []}


@dataclass(frozen=True)
class Transition:
    """From the objects as listed to the desired ones: what is not yet right, and the writes that can take."""

    differing: frozenset[str]  # names whose spec, labels or existence is not yet right
    bound: int  # spec writes needed at most: 1 per differing name, 2 when it loses members (release, then final)
    status_due: frozenset[str]  # names whose status must be written (not Synced at its generation, or spec due)

    @classmethod
    def of(cls, have: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> Transition:
        differing: set[str] = set()
        bound = 0
        for name in set(have) | set(want):
            obj, wanted = have.get(name), want.get(name)
            if obj is None or wanted is None:
                differing.add(name)
                bound += 1
            elif not spec_right(obj, wanted):
                differing.add(name)
                bound += 2 if _members(obj.get("spec")) - _members(wanted["spec"]) else 1
        due = {n for n in want if n in differing or not status_right(have[n])}
        return cls(frozenset(differing), bound, frozenset(due))


def spec_written(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    """Names whose spec was written between two listings: created, deleted, or a new ``metadata.generation``."""
    changed = set(before) ^ set(after)
    changed |= {
        n for n in set(before) & set(after)
        if before[n]["metadata"].get("generation") != after[n]["metadata"].get("generation")
        or before[n]["metadata"]["uid"] != after[n]["metadata"]["uid"]
    }  # fmt: skip
    return changed


# -- the API server's own count of requests ----------------------------------------------------

_REQUEST = re.compile(r"^apiserver_request_total\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = frozenset({"APPLY", "PATCH", "POST", "PUT", "CREATE", "UPDATE", "DELETE", "DELETECOLLECTION"})


@dataclass
class ServerCounts:
    """HyperNode write requests as the API server counted them (``apiserver_request_total``): spec and status."""

    plane: LocalControlPlane
    baseline: Counter[str] = field(default_factory=Counter)

    def read(self) -> Counter[str]:
        status, text = self.plane.request("GET", "/metrics")
        assert status == 200 and isinstance(text, str), f"API server metrics: HTTP {status}"
        totals: Counter[str] = Counter()
        for line in text.splitlines():
            match = _REQUEST.match(line)
            if not match:
                continue
            labels = dict(_LABEL.findall(match.group(1)))
            if labels.get("resource") != PLURAL or labels.get("verb") not in WRITE_VERBS or labels.get("dry_run"):
                continue  # a dry run (the operator's writer-fence check) writes nothing
            totals["status" if labels.get("subresource") == "status" else "spec"] += int(float(match.group(2)))
        return totals

    def mark(self) -> ServerCounts:
        self.baseline = self.read()
        return self

    def since(self) -> Counter[str]:
        now = self.read()
        return Counter({k: now[k] - self.baseline[k] for k in ("spec", "status")})


def wait_until(condition: Callable[[], bool], within: float, what: str, every: float = 0.5,
               alive: Iterable[Callable[[], None]] = ()) -> float:  # fmt: skip
    """Seconds until ``condition()``; each of ``alive`` is called every round and raises if something died."""
    started = time.monotonic()
    while True:
        for check in alive:
            check()
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not reached within {within:.0f}s")
        time.sleep(every)


class SpecChecks:
    """``moment_problems`` for the StateWatcher, computed again only when a spec or the set of names changed.

    A status write (half the events of a sync) changes neither, so the problems are the ones found for the
    state before it: the same answer without a pass over every member (50 ms at 16,384 nodes). Install with
    ``monkeypatch.setattr(tests.integration.watcher, "moment_problems", SpecChecks())``.
    """

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, Any]] = {}  # name -> (id of the HyperNode checked, its spec)
        self.last: list[str] = []
        self.computed = self.reused = 0

    def __call__(self, state: Mapping[str, HyperNode], *, existing: Collection[str] = ()) -> list[str]:
        same = self.computed > 0 and not existing and state.keys() == self.seen.keys()
        if same:
            for name, hypernode in state.items():
                checked_id, checked_spec = self.seen[name]
                if id(hypernode) != checked_id and hypernode.spec != checked_spec:
                    same = False
                    break
        if same:
            self.reused += 1
        else:
            self.computed += 1
            self.last = moment_problems(state, existing=existing)
        self.seen = {name: (id(h), h.spec) for name, h in state.items()}
        return list(self.last)
