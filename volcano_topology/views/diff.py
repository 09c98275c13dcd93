"""``volcano-topology diff SOURCE --config FILE``: what that provider would change in the live cluster.

The provider runs once, offline (as ``discover`` runs it); the cluster's HyperNodes are read;
the writer's own planner (:func:`volcano_topology.plan.plan_changes`, with the same delete
set the writer uses for a snapshot) says what would be created, updated and deleted. Nothing
is written. Exit status: 0 when nothing would change, 1 when something would (or a desired
name belongs to someone else), 2 when the provider or the cluster cannot be read, or when the
writer would refuse the snapshot (a member naming nothing, writes no order makes safe).

Each object is diffed as the writer's server-side apply sees it: the spec, and only the
labels and annotations the provider sets or set before (its field manager's), so another
tool's labels on the same object never show up as a change.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from volcano_topology import fence, ownership
from volcano_topology.api import HyperNode
from volcano_topology.plan import Create, DeletionGuard, Observed, Plan, Update, plan_changes
from volcano_topology.tree import missing_member_problems
from volcano_topology.views.progress import ticking

_GREEN, _RED, _CYAN, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[36m", "\x1b[0m"


@dataclass
class Changes:
    source: str
    plan: Plan
    desired: dict[str, HyperNode]
    observed: dict[str, Observed]
    refusals: list[str] = field(default_factory=list)  # why the writer would refuse the snapshot (exit 2)

    @property
    def changed(self) -> bool:
        counts = self.plan.counts()
        return bool(counts["create"] or counts["update"] or counts["delete"] or self.plan.conflicts)


def changes(source: str, desired: Mapping[str, HyperNode], observed: Mapping[str, Observed]) -> Changes:
    """The writer's plan for a snapshot of ``desired`` (objects as written: ownership labels on) over ``observed``."""
    owned = {name for name, o in observed.items() if o.owner == source}
    plan = plan_changes(source, desired, observed, delete=owned - set(desired))
    # What the writer's snapshot refuses beyond discover's checks: a member naming a HyperNode that is neither
    # in the snapshot nor someone else's in the cluster, and writes no order makes safe.
    others = set(observed) - owned
    refusals = [f"HyperNode/{p.name}: {p.message}" for p in missing_member_problems(desired, others)]
    refusals += [
        f"HyperNode/{name}: no order of writes keeps the tree strict at every moment" for name in plan.unordered
    ]
    return Changes(source, plan, dict(desired), dict(observed), refusals)


def _desired_view(hypernode: HyperNode) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": hypernode.name}
    if hypernode.metadata.labels:
        metadata["labels"] = dict(sorted(hypernode.metadata.labels.items()))
    if hypernode.metadata.annotations:
        metadata["annotations"] = dict(sorted(hypernode.metadata.annotations.items()))
    view: dict[str, Any] = {"apiVersion": hypernode.api_version, "kind": hypernode.kind, "metadata": metadata}
    if hypernode.spec is not None:
        view["spec"] = hypernode.spec.to_dict()
    return view


def _observed_view(observed: Observed, manager: str, wanted: HyperNode | None) -> dict[str, Any]:
    """What the apply would touch: labels/annotations this manager owns or wants (all of them for a delete)."""
    owned_labels, owned_annotations = observed.managed_keys.get(manager, (frozenset(), frozenset()))
    want_labels = set((wanted.metadata.labels or {}) if wanted else observed.labels)
    want_annotations = set((wanted.metadata.annotations or {}) if wanted else observed.annotations)
    labels = {k: v for k, v in observed.labels.items() if k in want_labels or k in owned_labels}
    annotations = {k: v for k, v in observed.annotations.items() if k in want_annotations or k in owned_annotations}
    if wanted is not None:  # the writer carries the term an object was created in over unchanged: no change
        annotations.pop(fence.TERM_ANNOTATION, None)
    metadata: dict[str, Any] = {"name": observed.name}
    if labels:
        metadata["labels"] = dict(sorted(labels.items()))
    if annotations:
        metadata["annotations"] = dict(sorted(annotations.items()))
    view: dict[str, Any] = {"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode", "metadata": metadata}
    if observed.spec is not None:
        view["spec"] = dict(observed.spec)
    return view


def _lines(view: dict[str, Any] | None) -> list[str]:
    return [] if view is None else yaml.safe_dump(view, sort_keys=False).splitlines(keepends=True)


def render_diff(result: Changes, *, color: bool = False) -> str:
    """A unified diff per object (in the order the writer would write), then the summary line."""
    manager = ownership.field_manager(result.source)
    out: list[str] = []
    seen: set[str] = set()
    for op in result.plan.operations:
        if op.name in seen or (isinstance(op, Update) and op.release):
            continue  # a release is a step of the same object's update: its final form is what is diffed
        seen.add(op.name)
        if isinstance(op, Create):
            before, after, verb = None, _desired_view(op.hypernode), "create"
        elif isinstance(op, Update):
            before = _observed_view(op.observed, manager, op.hypernode)
            after, verb = _desired_view(op.hypernode), "update"
        else:
            before, after, verb = _observed_view(op.observed, manager, None), None, "delete"
        label = f"HyperNode/{op.name} ({verb})"
        diff = difflib.unified_diff(
            _lines(before), _lines(after), f"cluster: {label}" if before else "/dev/null",
            f"{result.source}: {label}" if after else "/dev/null",
        )  # fmt: skip
        for line in diff:
            out.append(_paint(line if line.endswith("\n") else line + "\n", color))
    for conflict in result.plan.conflicts:
        out.append(
            f"conflict: HyperNode/{conflict.name} already exists and belongs to {conflict.owner}: never written\n"
        )
    out.append(summary(result) + "\n")
    return "".join(out)


def summary(result: Changes) -> str:
    counts = result.plan.counts()
    text = (
        f"{result.source}: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete, "
        f"{counts['unchanged']} unchanged"
    )
    if result.plan.conflicts:
        text += f", {len(result.plan.conflicts)} held by others"
    writes = counts["create"] + counts["update"] + counts["release"] + counts["delete"]
    if writes:
        text += f" ({writes} write{'s' if writes != 1 else ''} in {len(result.plan.waves)} wave(s))"
    owned = sum(1 for o in result.observed.values() if o.owner == result.source)
    refusal = DeletionGuard().refusal(owned, counts["delete"], len(result.desired))
    if refusal is not None:
        text += f"; with the default deletion guard the operator would refuse this: {refusal}"
    if result.refusals:
        text += f"; the operator would refuse this snapshot: {'; '.join(result.refusals[:5])}"
    return text


def _paint(line: str, color: bool) -> str:
    if not color:
        return line
    if line.startswith(("+++", "---")):
        return f"\x1b[1m{line.rstrip(chr(10))}{_RESET}\n"
    code = {"+": _GREEN, "-": _RED, "@": _CYAN}.get(line[:1])
    return f"{code}{line.rstrip(chr(10))}{_RESET}\n" if code else line


# -- the command ---------------------------------------------------------------------------


def add_diff_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = commands.add_parser(
        "diff",
        help="what a provider would create, update and delete in the live cluster (writes nothing; exit 1 if any)",
    )
    diff.add_argument("source", help="the provider's name (its entry point)")
    diff.add_argument(
        "--config", required=True, help="the provider's config: a file (its config block, or a file with "
        "networkTopologyDiscovery), or the block inline",
    )  # fmt: skip
    diff.add_argument("--kubeconfig", help="kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config)")
    diff.add_argument("--provider-path", action="append", default=[], metavar="DIR", help="extra provider directory")
    diff.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the provider (default 30)")
    diff.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="default: on a terminal")
    diff.set_defaults(handler=_diff)


def _diff(args: argparse.Namespace) -> int:
    import traceback

    from kubernetes import client

    from volcano_topology import kube, registry
    from volcano_topology.api import GROUP, PLURAL, VERSION
    from volcano_topology.cli import config_text
    from volcano_topology.discover import DiscoveryError, discover_once, provider_config
    from volcano_topology.views.commands import EXIT_CHANGES, EXIT_OK, EXIT_USAGE, use_color
    from volcano_topology.views.progress import Progress

    loaded, errors = registry.load([args.source], args.provider_path)
    if errors:
        print(f"error: {errors[0]}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = provider_config(config_text(args.config), args.source)
        provider = registry.instantiate(loaded[args.source], config)
    except (OSError, yaml.YAMLError, DiscoveryError, registry.ProviderConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        api = kube.api_client(args.kubeconfig)
    except Exception as exc:  # no kubeconfig, or an unreadable one
        print(f"error: cannot reach the cluster: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress()
    try:
        try:
            nodes: dict[str, dict[str, str]] = {}
            if provider.needs_nodes:
                progress.step("reading Nodes …", force=True)
                listed: Any = client.CoreV1Api(api).list_node()
                nodes = {n.metadata.name: dict(n.metadata.labels or {}) for n in listed.items}
            discovery = asyncio.run(_discover(args.source, provider, nodes, args.timeout, progress, discover_once))
        except DiscoveryError as exc:
            progress.done()
            print(f"error: {exc}", file=sys.stderr)
            if exc.provider_error is not None:
                sys.stderr.write("".join(traceback.format_exception(exc.provider_error)))
            return EXIT_USAGE
        if discovery.problems:
            progress.done()
            for problem in discovery.problems:
                print(f"{args.source}: {problem}", file=sys.stderr)
            print(f"error: the operator would refuse {args.source}'s topology; nothing to compare", file=sys.stderr)
            return EXIT_USAGE
        progress.step("reading HyperNodes …", force=True)
        try:
            items: Any = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
        except Exception as exc:
            progress.done()
            print(f"error: cannot read the cluster's HyperNodes: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        api.close()  # type: ignore[no-untyped-call]
    progress.done()
    observed = {o.name: o for o in map(Observed.from_dict, items["items"])}
    result = changes(args.source, discovery.hypernodes, observed)
    sys.stdout.write(render_diff(result, color=use_color(args.color, sys.stdout)))
    if result.refusals:
        for refusal in result.refusals:
            print(f"{args.source}: {refusal}", file=sys.stderr)
        print(f"error: the operator would refuse {args.source}'s snapshot; nothing would be written", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CHANGES if result.changed else EXIT_OK


async def _discover(source: str, provider: Any, nodes: Any, within: float, progress: Any, run: Any) -> Any:
    """``discover_once``, with a ticking line on a terminal while the provider works."""
    return await ticking(progress, f"discovering with {source}", run(source, provider, nodes, within=within))
