"""Desired HyperNodes vs. what the cluster has -> waves of writes. Pure: no I/O.

Volcano's scheduler reads HyperNodes while they change, and stops scheduling every
topology-constrained job when the tree breaks. The writer runs each wave's writes
concurrently and starts a wave only when every write of the one before succeeded, so
after *any* subset of a wave has landed, in any order, this provider's objects keep:

(a) no node in two HyperNodes; (b) no HyperNode in two parents; (c) no reference to a
HyperNode that does not exist; (d) every parent's tier above its children's
(:func:`volcano_topology.tree.moment_problems` checks exactly these), given that the
observed state and the desired one keep them. Members are compared by ``exactMatch``
name; a referenced HyperNode this provider neither owns nor creates (someone else's)
is taken as it is.

How (``plan_changes``):

1. Each desired object is a ``Create``, an ``Update``, unchanged (it already matches:
   no write), or a ``Conflict`` (the name belongs to someone else: never written).
   ``delete`` names this provider's objects to remove.
2. An update that loses members (Node or HyperNode) first gets a **release** write
   (``Update(release=True)``): the old object with only the members it keeps
   (old ∩ new), at its old tier and tierName, with the desired labels and annotations.
   When that is already the final form (the object only loses members) there is one
   write, the final one. When it keeps nothing, the final write releases and claims at
   once, as soon as what it claims is free; only if that never comes (two single-node
   leaves swapping nodes, a spine's only leaf renamed: nothing else could be written
   first) does it first release to a placeholder, one ``Node`` member that selects no
   node (:data:`PLACEHOLDER_PATTERN`). All such objects in the way are released together.
3. The writes are scheduled greedily over a simulated cluster (indexes node -> holders
   and child -> parents, so a 550-object, 16,384-node plan stays fast). A wave holds the
   pending writes that are each valid against the simulated state and pairwise
   compatible: no node or child claimed while another object still holds it or another
   write of the wave claims it; no child claimed or kept that is missing or deleted in
   the wave; tiers ordered under every combination of the wave's writes; a delete only
   once nothing references the object. Releases and deletes are tried first, then
   final writes; when an object's final write is already valid its release is skipped.
   The wave is applied to the simulated state and the next one built from there.

So releases come before claims, children are created before parents reference them,
parents let go of a child before it is deleted, tiers rise top-down and fall
bottom-up, and a name is written at most twice (its release, then its final form).

If the observed or desired state itself breaks these rules (say, deleting a HyperNode
that an unchanged parent still references), what cannot be ordered is appended in the
old tree order (releases, then creates and updates children first, then deletes parents
first) and named in ``Plan.unordered``.

Ownership: only objects carrying both ownership labels for this provider are updated
or deleted; any other object under a desired name is a conflict, never overwritten.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from volcano_topology import fence, ownership
from volcano_topology.api import HyperNode, HyperNodeSpec, Member, MemberSelector, ObjectMeta, RegexMatch
from volcano_topology.tree import levels

# A release keeps at least one member (Volcano's admission refuses an empty HyperNode).
# When an object keeps none, this Node member stands in: no node name (a DNS subdomain)
# contains "/", so it selects no node, and it is no HyperNode reference.
PLACEHOLDER_PATTERN = "^volcano-topology/released$"


def placeholder_member() -> Member:
    return Member(type="Node", selector=MemberSelector(regex_match=RegexMatch(pattern=PLACEHOLDER_PATTERN)))


@dataclass(frozen=True)
class Observed:
    """One HyperNode as the API server has it, reduced to what planning needs."""

    name: str
    owner: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    # The spec as canonical JSON (None: no spec): a few KB per object instead of its dicts, and compared in one go.
    spec_json: str | None
    resource_version: str
    uid: str
    # label and annotation keys each field manager owns, from managedFields
    managed_keys: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    hypernode: HyperNode | None = None

    @classmethod
    def from_dict(
        cls, obj: Mapping[str, Any], previous: Observed | None = None, sent: tuple[HyperNode, Any] | None = None
    ) -> Observed:
        """``previous``: an earlier version of the object; when its spec, labels and annotations are the same,
        its parsed HyperNode is kept instead of validating the same content again (status writes, echoes).
        ``sent``: the valid HyperNode just applied and the spec it was sent as; when the server's answer has
        that spec, the answer is not validated again either."""
        metadata = obj.get("metadata") or {}
        labels = dict(metadata.get("labels") or {})
        managed: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        for entry in metadata.get("managedFields") or []:
            fields = ((entry.get("fieldsV1") or {}).get("f:metadata")) or {}
            keys = (_keys(fields.get("f:labels")), _keys(fields.get("f:annotations")))
            had = managed.get(entry.get("manager", ""), (frozenset(), frozenset()))
            managed[entry.get("manager", "")] = (had[0] | keys[0], had[1] | keys[1])
        annotations = dict(metadata.get("annotations") or {})
        raw_spec = obj.get("spec")
        spec_json = None if raw_spec is None else canonical(raw_spec)
        parsed: HyperNode | None
        if (
            previous is not None
            and previous.spec_json == spec_json
            and previous.labels == labels
            and previous.annotations == annotations
        ):
            parsed = previous.hypernode
        elif sent is not None and sent[0].spec is not None and sent[1] == raw_spec:
            kept = {k: v for k, v in metadata.items() if k in ("name", "labels", "annotations")}
            parsed = sent[0].model_copy(update={"metadata": ObjectMeta.model_validate(kept)})
        else:
            # Only what planning reads: managedFields (most of an object's size) and status stay out of it.
            kept = {k: v for k, v in metadata.items() if k in ("name", "labels", "annotations")}
            try:
                parsed = HyperNode.model_validate({**{k: v for k, v in obj.items() if k != "status"}, "metadata": kept})
            except ValueError:
                parsed = None  # someone else's object, or one written before today's rules
        return cls(
            name=metadata.get("name", ""),
            owner=ownership.owner_of(labels),
            labels=labels,
            annotations=annotations,
            spec_json=spec_json,
            resource_version=metadata.get("resourceVersion", ""),
            uid=metadata.get("uid", ""),
            managed_keys=managed,
            hypernode=parsed,
        )

    @property
    def spec(self) -> Mapping[str, Any] | None:
        """The spec as the API server has it (parsed again from ``spec_json`` on each use)."""
        return None if self.spec_json is None else dict(json.loads(self.spec_json))


def canonical(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


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
    """Write ``hypernode`` over ``observed``.

    ``release``: an intermediate write, the old object without the members it loses
    (see the module docstring). The same name's final ``Update`` follows in a later
    wave; it carries the same ``observed``, so the writer applies it onto the
    resourceVersion its release returned.
    """

    hypernode: HyperNode
    observed: Observed
    release: bool = False

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
    """``waves``: run in order, each one's writes concurrently; stop at the first wave that fails.

    ``unchanged``: desired objects that already match (no write). ``conflicts``: desired
    names held by someone else (no write). ``unordered``: names whose writes could not be
    ordered safely because the observed or desired state already breaks the tree rules.
    """

    waves: list[list[Operation]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    unordered: list[str] = field(default_factory=list)

    @property
    def operations(self) -> list[Operation]:
        """Every write in order; a name appears twice when its release precedes its final update."""
        return [op for wave in self.waves for op in wave]

    def counts(self) -> dict[str, int]:
        """Objects created, updated, deleted and unchanged, plus ``release``: the intermediate writes.

        ``update`` counts objects (final updates), so an object released first still counts
        once there; the number of writes is ``create + update + release + delete``.
        """
        ops = self.operations
        return {
            "create": sum(isinstance(op, Create) for op in ops),
            "update": sum(isinstance(op, Update) and not op.release for op in ops),
            "release": sum(isinstance(op, Update) and op.release for op in ops),
            "delete": sum(isinstance(op, Delete) for op in ops),
            "unchanged": len(self.unchanged),
        }


def with_ownership(hypernode: HyperNode, provider: str) -> HyperNode:
    """The object as written: the provider's labels with both ownership labels forced on top, and without the
    writer's own term annotation (:mod:`volcano_topology.fence`), which only the writer sets."""
    metadata = hypernode.metadata
    labels = {**(metadata.labels or {}), **ownership.ownership_labels(provider)}
    annotations = {k: v for k, v in (metadata.annotations or {}).items() if k != fence.TERM_ANNOTATION}
    meta = ObjectMeta(name=metadata.name, labels=labels, annotations=annotations or None)
    return hypernode.model_copy(update={"metadata": meta, "status": None})


def matches(desired: HyperNode, observed: Observed, manager: str) -> bool:
    """True when applying ``desired`` would change nothing this manager owns.

    The writer's term annotation is left out: set once at creation and carried over unchanged by every
    later apply (:mod:`volcano_topology.fence`), it never calls for a write."""
    if (observed.spec_json or "{}") != canonical(desired.spec.to_dict() if desired.spec else {}):
        return False
    owned_labels, owned_annotations = observed.managed_keys.get(manager, (frozenset(), frozenset()))
    for wanted, have, owned in (
        (desired.metadata.labels or {}, observed.labels, owned_labels),
        (desired.metadata.annotations or {}, observed.annotations, owned_annotations),
    ):
        if any(have.get(key) != value for key, value in wanted.items()):
            return False
        if owned - set(wanted) - {fence.TERM_ANNOTATION}:  # a key we set earlier and no longer want: apply removes it
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
    """Waves of writes that make the cluster hold ``desired`` (already carrying ownership labels).

    ``delete`` names this provider's objects to remove; names it does not own are ignored
    (deleting what is not ours, or what is already gone, needs no request). ``observed``
    is everything the cluster has; only this provider's objects are planned over.
    """
    manager = ownership.field_manager(provider)
    plan = Plan()
    writes: list[Create | Update] = []
    for name in sorted(desired):
        hypernode = desired[name]
        current = observed.get(name)
        if current is None:
            writes.append(Create(hypernode))
        elif current.owner != provider:
            plan.conflicts.append(Conflict(name, describe_owner(current)))
        elif matches(hypernode, current, manager):
            plan.unchanged.append(name)
        else:
            writes.append(Update(hypernode, current))
    deletes = [Delete(observed[n]) for n in sorted(set(delete)) if n in observed and observed[n].owner == provider]
    if writes or deletes:
        owned = {name: o for name, o in observed.items() if o.owner == provider}
        _Scheduler(owned, writes, deletes).run(plan)
    return plan


# -- scheduling ---------------------------------------------------------------------------

_MemberKey = tuple[str, str]


@dataclass(frozen=True)
class _Members:
    """One member list, read once: each member's identity, and the exactMatch names by type."""

    members: list[Member]
    keys: list[_MemberKey]
    nodes: frozenset[str]
    children: frozenset[str]

    @classmethod
    def of(cls, members: list[Member]) -> _Members:
        keys: list[_MemberKey] = []
        nodes: set[str] = set()
        children: set[str] = set()
        for member in members:
            exact = member.selector.exact_match if member.selector is not None else None
            if exact is None:
                keys.append((member.type, member.model_dump_json()))  # never a name: JSON starts with "{"
                continue
            keys.append((member.type, exact.name))
            (nodes if member.type == "Node" else children).add(exact.name)
        return cls(members, keys, frozenset(nodes), frozenset(children))


@dataclass(frozen=True)
class _Shape:
    """What the tree rules see of one object: its tier and its exactMatch members."""

    tier: int
    nodes: frozenset[str]
    children: frozenset[str]


@dataclass(frozen=True)
class _Old:
    """An observed object's spec, also when it no longer parses as a whole."""

    tier: int | None
    tier_name: str | None
    members: _Members

    @classmethod
    def of(cls, observed: Observed) -> _Old:
        if observed.hypernode is not None:
            spec = observed.hypernode.spec
            members = _Members.of(observed.hypernode.members)
            return cls(spec.tier if spec else None, spec.tier_name if spec else None, members)
        raw = dict(observed.spec or {})
        readable = []
        for item in raw.get("members") or []:
            try:
                readable.append(Member.model_validate(item))
            except ValueError:
                continue  # a member we cannot read is one we cannot keep
        tier, tier_name = raw.get("tier"), raw.get("tierName")
        return cls(
            tier if isinstance(tier, int) and not isinstance(tier, bool) and tier >= 0 else None,
            tier_name if isinstance(tier_name, str) else None,
            _Members.of(readable),
        )


@dataclass(eq=False)
class _Step:
    op: Operation
    post: _Shape | None  # the object's shape once written; None for a delete

    @property
    def name(self) -> str:
        return self.op.name


class _State:
    """The simulated cluster (this provider's objects), indexed for the checks."""

    def __init__(self, shapes: Mapping[str, _Shape]) -> None:
        self.shapes = dict(shapes)
        self.holders: dict[str, set[str]] = defaultdict(set)  # node -> HyperNodes listing it
        self.parents: dict[str, set[str]] = defaultdict(set)  # HyperNode -> HyperNodes listing it
        for name, shape in self.shapes.items():
            for node in shape.nodes:
                self.holders[node].add(name)
            for child in shape.children:
                self.parents[child].add(name)

    def apply(self, name: str, post: _Shape | None) -> None:
        before = self.shapes.pop(name, None)
        old_nodes = before.nodes if before else frozenset()
        old_children = before.children if before else frozenset()
        new_nodes = post.nodes if post else frozenset()
        new_children = post.children if post else frozenset()
        for node in old_nodes - new_nodes:
            self.holders[node].discard(name)
        for node in new_nodes - old_nodes:
            self.holders[node].add(name)
        for child in old_children - new_children:
            self.parents[child].discard(name)
        for child in new_children - old_children:
            self.parents[child].add(name)
        if post is not None:
            self.shapes[name] = post


class _Wave:
    """Writes that may land in any order and any subset without breaking the tree rules."""

    def __init__(self, state: _State, known: frozenset[str]) -> None:
        self.state = state
        self.known = known  # names this plan may see appear or go; any other child is someone else's
        self.steps: list[_Step] = []
        self.names: set[str] = set()
        self.claimed_nodes: set[str] = set()
        self.claimed_children: dict[str, str] = {}  # child -> the HyperNode newly listing it in this wave
        self.tiers: dict[str, int] = {}  # tier after this wave's write, per object written
        self.children: dict[str, frozenset[str]] = {}  # children after this wave's write
        self.deleted: set[str] = set()

    def admits(self, step: _Step) -> bool:
        name, post, state = step.name, step.post, self.state
        if name in self.names:
            return False
        if post is None:  # a delete: nothing may list it, now or in this wave
            return not state.parents.get(name) and name not in self.claimed_children
        current = state.shapes.get(name)
        tier = post.tier
        retiered = current is None or current.tier != tier
        for node in post.nodes:
            if (current is None or node not in current.nodes) and (
                state.holders.get(node) or node in self.claimed_nodes
            ):
                return False
        for child in post.children:
            if current is not None and child in current.children:  # kept: only its tier matters
                if child in self.tiers and self.tiers[child] >= tier:
                    return False
                if retiered and child in state.shapes and state.shapes[child].tier >= tier:
                    return False
                continue
            if state.parents.get(child) or child in self.claimed_children:
                return False  # release before claim
            if child in self.known:
                shape = state.shapes.get(child)
                if shape is None or child in self.deleted or shape.tier >= tier:
                    return False  # created first; never deleted under a new parent
                if child in self.tiers and self.tiers[child] >= tier:
                    return False
        for holder in state.parents.get(name, ()):
            if retiered and state.shapes[holder].tier <= tier:
                return False
            if holder in self.tiers and name in self.children[holder] and self.tiers[holder] <= tier:
                return False
        claimer = self.claimed_children.get(name)
        return claimer is None or self.tiers[claimer] > tier

    def add(self, step: _Step) -> None:
        name, post = step.name, step.post
        self.steps.append(step)
        self.names.add(name)
        if post is None:
            self.deleted.add(name)
            return
        current = self.state.shapes.get(name)
        self.claimed_nodes.update(post.nodes - current.nodes if current else post.nodes)
        for child in post.children - current.children if current else post.children:
            self.claimed_children[child] = name
        self.tiers[name] = post.tier
        self.children[name] = post.children


class _Scheduler:
    def __init__(self, owned: Mapping[str, Observed], writes: list[Create | Update], deletes: list[Delete]) -> None:
        self.owned = owned
        final_tiers = {w.name: w.hypernode.spec.tier for w in writes if w.hypernode.spec is not None}
        self.old: dict[str, _Old] = {}
        shapes: dict[str, _Shape] = {}
        for name, current in owned.items():
            old = self.old[name] = _Old.of(current)
            tier = old.tier if old.tier is not None else final_tiers.get(name, 0)  # unreadable: assume no change
            shapes[name] = _Shape(tier, old.members.nodes, old.members.children)
        self.state = _State(shapes)
        self.known = frozenset(shapes) | {w.name for w in writes if isinstance(w, Create)}
        self.new: dict[str, _Members] = {}
        self.finals: dict[str, _Step] = {}
        self.releases: dict[str, _Step] = {}
        self.deletes = {d.name: _Step(d, None) for d in deletes}
        self.released: set[str] = set()  # names whose release has been scheduled
        for write in writes:
            new = self.new[write.name] = _Members.of(write.hypernode.members)
            self.finals[write.name] = _Step(write, _Shape(final_tiers.get(write.name, 0), new.nodes, new.children))
            if isinstance(write, Update) and (release := self._release(write, placeholder=False)) is not None:
                self.releases[write.name] = release

    def _release(self, update: Update, *, placeholder: bool) -> _Step | None:
        """The release write for ``update``: None when it loses nothing, keeps nothing, or is its final form."""
        old, new = self.old[update.name], self.new[update.name]
        wanted = set(new.keys)
        kept = [m for m, key in zip(old.members.members, old.members.keys, strict=True) if key in wanted]
        if len(kept) == len(old.members.members):
            return None  # loses nothing
        if not kept and not placeholder:
            return None  # the final write releases and claims at once, when it can
        final = update.hypernode
        spec = final.spec
        tier = old.tier if old.tier is not None else (spec.tier if spec else 0)
        tier_name = old.tier_name if old.tier is not None else (spec.tier_name if spec else None)
        if spec is not None and (tier, tier_name) == (spec.tier, spec.tier_name) and len(kept) == len(wanted):
            return None  # only loses members: the release is the final write
        form = HyperNodeSpec(tier=tier, tier_name=tier_name, members=kept or [placeholder_member()])
        shape = _Shape(tier, old.members.nodes & new.nodes, old.members.children & new.children)
        return _Step(Update(final.model_copy(update={"spec": form}), update.observed, release=True), shape)

    def run(self, plan: Plan) -> None:
        while self.finals or self.releases or self.deletes:
            wave = self._next_wave()
            if not wave.steps:
                if self._unstick():
                    continue
                plan.unordered = sorted({*self.finals, *self.releases, *self.deletes})
                plan.waves.extend(self._rest())
                return
            for step in wave.steps:
                self.state.apply(step.name, step.post)
                if step.post is None:
                    del self.deletes[step.name]
                elif self.releases.get(step.name) is step:
                    del self.releases[step.name]
                    self.released.add(step.name)
                else:
                    self.releases.pop(step.name, None)  # the final write released too
                    del self.finals[step.name]
            plan.waves.append([step.op for step in wave.steps])

    def _next_wave(self) -> _Wave:
        wave = _Wave(self.state, self.known)
        for name in sorted(self.releases):
            final = self.finals[name]
            if wave.admits(final):
                wave.add(final)  # already possible: the release would be a needless write
            elif wave.admits(self.releases[name]):
                wave.add(self.releases[name])
        for name in sorted(self.deletes):
            if wave.admits(self.deletes[name]):
                wave.add(self.deletes[name])
        for name in sorted(self.finals):
            if name not in self.releases and wave.admits(self.finals[name]):
                wave.add(self.finals[name])
        return wave

    def _unstick(self) -> bool:
        """Nothing can go: release to a placeholder each object that keeps none of its members and holds
        what another write waits for (so a cycle of such objects resolves in one release wave)."""
        candidates: dict[str, _Step] = {}
        for name in sorted(self.finals):
            op = self.finals[name].op
            if isinstance(op, Update) and name not in self.releases and name not in self.released:
                release = self._release(op, placeholder=True)
                if release is not None:
                    candidates[name] = release
        if not candidates:
            return False
        wanted_nodes: set[str] = set()
        wanted_children: set[str] = set(self.deletes)
        for step in self.finals.values():
            assert step.post is not None
            current = self.state.shapes.get(step.name)
            wanted_nodes |= step.post.nodes - current.nodes if current else step.post.nodes
            wanted_children |= step.post.children - current.children if current else step.post.children

        def blocks(name: str) -> bool:
            shape = self.state.shapes[name]
            if shape.nodes & wanted_nodes or shape.children & wanted_children:
                return True
            rising = (self.finals.get(child) for child in shape.children)  # a child that must rise past it
            return any(step is not None and step.post is not None and step.post.tier >= shape.tier for step in rising)

        blocking = {name: step for name, step in candidates.items() if blocks(name)} or candidates
        self.releases.update(blocking)
        return True

    def _rest(self) -> list[list[Operation]]:
        """What the rules cannot order (they are broken already): releases, then children first, deletes last."""
        waves: list[list[Operation]] = []
        if self.releases:
            waves.append([self.releases[n].op for n in sorted(self.releases)])
        finals = {n: s.op.hypernode for n, s in self.finals.items() if not isinstance(s.op, Delete)}
        height = levels(finals)
        for level in sorted(set(height.values())):
            waves.append([self.finals[n].op for n in sorted(finals) if height[n] == level])
        if self.deletes:
            current = {n: o.hypernode for n, o in self.owned.items() if o.hypernode is not None}
            depth = levels(current)
            for level in sorted({depth.get(n, 0) for n in self.deletes}, reverse=True):
                waves.append([self.deletes[n].op for n in sorted(self.deletes) if depth.get(n, 0) == level])
        return waves


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
