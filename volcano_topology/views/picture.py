"""The tree as a picture: one row per tier (highest on top), parents centred over their children.

``layout`` is pure (boxes and lines in pixels); ``svg`` writes it as text with no dependency;
``png`` draws it with Pillow, an optional dependency (``pip install pillow``). When a tree has
more leaves than ``max_leaves``, the leaves under each parent are summarised in one box
(how many leaves, how many nodes, their hostlist), so a 16,384-node fabric stays legible.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from volcano_topology.views.formats import ExportError, check_exportable
from volcano_topology.views.hostlist import compress
from volcano_topology.views.model import Topology
from volcano_topology.views.treeview import summary

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, TITLE_H = 168, 58, 14, 56, 24, 44
_FILL = {"leaf": "#e8f1fb", "group": "#fdf3e1", "switch": "#eef6ea", "problem": "#fbe4e4"}
_STROKE = {"leaf": "#3b6ea5", "group": "#b07a16", "switch": "#4d8a3a", "problem": "#b03030"}


@dataclass
class Box:
    key: str
    lines: list[str]
    kind: str  # leaf, group (summarised leaves), switch, problem
    row: int
    x: float = 0.0
    y: float = 0.0


@dataclass
class Scene:
    width: int
    height: int
    title: str
    subtitle: str = ""
    boxes: list[Box] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    tier_labels: list[tuple[float, str]] = field(default_factory=list)  # (y, text)


def layout(view: Topology, *, max_leaves: int = 48, title: str = "HyperNodes") -> Scene:
    check_exportable(view)
    tiers = view.tiers()
    rows = {tier: index for index, tier in enumerate(tiers)}
    names = view.tier_names()
    summarise = len(view.leaves()) > max_leaves
    boxes: dict[str, Box] = {}
    edges: list[tuple[str, str]] = []
    order: list[str] = []  # bottom boxes, left to right

    def box_for(name: str) -> Box:
        tier = view.tier(name) or 0
        nodes = view.direct_nodes[name]
        head = f"tier {tier}" + (f" {names[tier]}" if tier in names else "")
        lines = [_fit(name), head]
        if nodes:
            lines = [_fit(name), f"{len(nodes)} nodes", _fit(compress(nodes))]
        kind = "problem" if view.flags_of(name) else ("leaf" if nodes else "switch")
        return Box(name, lines, kind, rows[tier])

    def place(name: str) -> None:
        boxes[name] = box_for(name)
        kids = view.children[name]
        leaf_kids = [k for k in kids if not view.children[k] and view.direct_nodes[k]]
        if summarise and len(leaf_kids) > 1:
            nodes = sorted({n for k in leaf_kids for n in view.direct_nodes[k]})
            key = f"{name}/leaves"
            row = max(rows[view.tier(k) or 0] for k in leaf_kids)
            what = names.get(tiers[row], f"tier {tiers[row]}")
            lines = [f"{len(leaf_kids)} x {what}", f"{len(nodes)} nodes", _fit(compress(nodes))]
            boxes[key] = Box(key, lines, "group", row)
            edges.append((name, key))
            order.append(key)
            kids = [k for k in kids if k not in leaf_kids]
        for kid in kids:
            edges.append((name, kid))
            place(kid)
        if not view.children[name]:
            order.append(name)

    for root in view.roots:
        place(root)
    for index, key in enumerate(order):
        boxes[key].x = MARGIN + 90 + index * (BOX_W + GAP_X)
    children: dict[str, list[str]] = {}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)

    def centre(key: str) -> float:
        kids = children.get(key, [])
        if kids:
            xs = [centre(k) for k in kids]
            boxes[key].x = (min(xs) + max(xs)) / 2
        return boxes[key].x

    for root in view.roots:
        centre(root)
    for box in boxes.values():
        box.y = MARGIN + TITLE_H + box.row * (BOX_H + GAP_Y)
    width = int(MARGIN * 2 + 90 + max(len(order), 1) * (BOX_W + GAP_X))
    height = int(MARGIN * 2 + TITLE_H + len(tiers) * (BOX_H + GAP_Y) - GAP_Y)
    scene = Scene(width, height, title, summary(view), list(boxes.values()), edges)
    for tier, row in rows.items():
        scene.tier_labels.append(
            (
                MARGIN + TITLE_H + row * (BOX_H + GAP_Y) + BOX_H / 2,
                f"tier {tier}" + (f" {names[tier]}" if tier in names else ""),
            )
        )
    return scene


def _fit(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg(scene: Scene) -> str:
    by_key = {b.key: b for b in scene.boxes}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{scene.width}" height="{scene.height}" '
        f'viewBox="0 0 {scene.width} {scene.height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{scene.width}" height="{scene.height}" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 14}" font-size="16" font-weight="bold">{escape(scene.title)}</text>',
        f'<text x="{MARGIN}" y="{MARGIN + 32}" font-size="12" fill="#555">{escape(scene.subtitle)}</text>',
    ]
    for y, text in scene.tier_labels:
        out.append(f'<text x="{MARGIN}" y="{y + 4:.0f}" font-size="12" fill="#555">{escape(text)}</text>')
    for parent, child in scene.edges:
        a, b = by_key[parent], by_key[child]
        out.append(
            f'<line x1="{a.x + BOX_W / 2:.0f}" y1="{a.y + BOX_H:.0f}" x2="{b.x + BOX_W / 2:.0f}" y2="{b.y:.0f}" '
            'stroke="#888" stroke-width="1.2"/>'
        )
    for box in scene.boxes:
        out.append(
            f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{_FILL[box.kind]}" stroke="{_STROKE[box.kind]}" stroke-width="1.5"/>'
        )
        for index, line in enumerate(box.lines):
            weight = ' font-weight="bold"' if index == 0 else ""
            out.append(
                f'<text x="{box.x + BOX_W / 2:.0f}" y="{box.y + 17 + index * 16:.0f}" font-size="12" '
                f'text-anchor="middle"{weight}>{escape(line)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png(scene: Scene, progress: Callable[[int, int], None] | None = None) -> bytes:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as exc:
        raise ExportError(
            "--format png needs Pillow: pip install pillow (or --format svg, which needs nothing)"
        ) from exc
    image = Image.new("RGB", (scene.width, scene.height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(12)
    bold = ImageFont.load_default(13)
    title = ImageFont.load_default(16)
    by_key = {b.key: b for b in scene.boxes}
    draw.text((MARGIN, MARGIN), scene.title, fill="black", font=title)
    draw.text((MARGIN, MARGIN + 22), scene.subtitle, fill="#555555", font=font)
    for y, text in scene.tier_labels:
        draw.text((MARGIN, y - 7), text, fill="#555555", font=font)
    for parent, child in scene.edges:
        a, b = by_key[parent], by_key[child]
        draw.line([(a.x + BOX_W / 2, a.y + BOX_H), (b.x + BOX_W / 2, b.y)], fill="#888888", width=1)
    total = len(scene.boxes)
    for done, box in enumerate(scene.boxes, start=1):
        draw.rounded_rectangle(
            [box.x, box.y, box.x + BOX_W, box.y + BOX_H], radius=6, fill=_FILL[box.kind], outline=_STROKE[box.kind],
            width=2,
        )  # fmt: skip
        for index, line in enumerate(box.lines):
            draw.text((box.x + BOX_W / 2, box.y + 12 + index * 16), line, fill="black",
                      font=bold if index == 0 else font, anchor="mm")  # fmt: skip
        if progress is not None:
            progress(done, total)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
