"""The HyperNode tree as terminal text: used by ``tree``, ``discover -o tree`` and ``dev``'s live view. Pure.

One line per HyperNode: ``name  (tier N tierName; K nodes: a, b, c, … z)``, then what is
wrong with it (``⚠ …``) and, when it is not ``Synced``, why. Owners are named per line only
when the set has more than one; the last line sums up (HyperNodes, tiers, nodes, owners,
Synced). ``depth`` and ``max_children`` fold large trees: what is folded is counted, never
dropped silently. ``color`` adds ANSI colours; without it the text is plain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from volcano_topology.views.model import Topology

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_GREEN = "\x1b[32m"


@dataclass(frozen=True)
class TreeOptions:
    depth: int | None = None  # levels shown below and including the roots; None: all
    max_children: int | None = None  # children shown per HyperNode; None: all
    color: bool = False
    summary: bool = True  # the closing line


def render_tree(view: Topology, options: TreeOptions | None = None) -> str:
    options = options or TreeOptions()
    paint = _Paint(options.color)
    owners = {view.owner(n) for n in view.hypernodes}
    show_owner = len(owners) > 1
    lines: list[str] = []
    seen: set[str] = set()

    def describe(name: str) -> str:
        tier = view.tier(name)
        tier_name = view.tier_name(name)
        head = f"tier {tier if tier is not None else '?'}" + (f" {tier_name}" if tier_name else "")
        nodes = view.direct_nodes[name]
        if nodes:
            shown = ", ".join(nodes[:3]) + (f", … {nodes[-1]}" if len(nodes) > 3 else "")
            head += f"; {len(nodes)} node{'s' if len(nodes) != 1 else ''}: {shown}"
        text = f"{paint(name, _BOLD)}  {paint(f'({head})', _DIM)}"
        if show_owner:
            text += "  " + paint(f"[{view.owner(name) or 'no owner'}]", _DIM)
        synced = view.synced(name)
        if synced is not None and not synced[0]:
            text += "  " + paint(f"✗ not synced: {synced[1]}", _YELLOW)
        for flag in view.flags_of(name):
            text += "  " + paint(f"⚠ {flag}", _RED)
        return text

    def walk(name: str, prefix: str, last: bool, top: bool, level: int) -> None:
        branch = "" if top else prefix + ("└── " if last else "├── ")
        if name in seen:  # a second parent, or a cycle: shown once, pointed at here
            lines.append(branch + paint(f"{name}  (shown above)", _RED))
            return
        seen.add(name)
        lines.append(branch + describe(name))
        children = view.children[name]
        inner = "" if top else prefix + ("    " if last else "│   ")
        if options.depth is not None and level >= options.depth and children:
            lines.append(inner + "└── " + paint(_folded(view, children, "below"), _DIM))
            seen.update(n for c in children for n in _subtree(view, c))
            return
        shown = children
        hidden: list[str] = []
        if options.max_children is not None and len(children) > options.max_children:
            shown, hidden = children[: options.max_children], children[options.max_children :]
        for index, child in enumerate(shown):
            walk(child, inner, index == len(shown) - 1 and not hidden, False, level + 1)
        if hidden:
            lines.append(inner + "└── " + paint(_folded(view, hidden, "more"), _DIM))
            seen.update(n for c in hidden for n in _subtree(view, c))

    for root in view.roots:
        if root not in seen:
            walk(root, "", True, True, 1)
    for flag in view.flags:
        if flag.name is None:
            lines.append(paint(f"⚠ {flag.message}", _RED))
    if options.summary and view.hypernodes:
        lines.append(paint(summary(view), _DIM))
    return "\n".join(lines) + "\n" if lines else ""


def summary(view: Topology) -> str:
    """``11 HyperNodes in 3 tiers: 1 core (tier 3), 2 spine (tier 2), 8 leaf (tier 1); 64 nodes; owner emulated``.

    Then ``Synced N/M`` when the objects carry the condition, and the number of problems if any.
    """
    per_tier = Counter(view.tier(n) for n in view.hypernodes)
    names = view.tier_names()
    tiers = ", ".join(
        f"{per_tier[t]} {names[t]} (tier {t})" if t in names else f"{per_tier[t]} at tier {t}" for t in view.tiers()
    )
    nodes = {node for found in view.direct_nodes.values() for node in found}
    text = f"{len(view.hypernodes)} HyperNodes in {len(view.tiers())} tiers: {tiers}; {len(nodes)} nodes"
    owners = Counter(view.owner(n) or "no owner" for n in view.hypernodes)
    if len(owners) == 1:
        (only,) = owners
        text += "; no owner" if only == "no owner" else f"; owner {only}"
    else:
        text += "; owners " + ", ".join(f"{o} ({c})" for o, c in sorted(owners.items()))
    states = [s for n in view.hypernodes if (s := view.synced(n)) is not None]
    if states:
        text += f"; Synced {sum(ok for ok, _ in states)}/{len(view.hypernodes)}"
    problems = len(view.flags)
    if problems:
        text += f"; {problems} problem{'s' if problems != 1 else ''}"
    return text


def _subtree(view: Topology, name: str) -> list[str]:
    order, stack, seen = [], [name], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        order.append(current)
        stack.extend(view.children[current])
    return order


def _folded(view: Topology, children: list[str], word: str) -> str:
    under = {n for c in children for n in _subtree(view, c)}
    nodes = {node for n in under for node in view.direct_nodes[n]}
    problems = sum(len(view.flags_of(n)) for n in under)
    text = f"… {len(children)} {word} ({len(under)} HyperNodes, {len(nodes)} nodes)"
    return text + (f" ⚠ {problems} problem(s) folded" if problems else "")


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.enabled else text
