"""``volcano-topology export --format F [FILE|-]``: the cluster's (or a file's) HyperNode tree in another format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ["json", "dot", "slurm-tree", "slurm-yaml", "kueue", "node-labels", "png", "svg"]


def add_export_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from volcano_topology.views.commands import _INPUT_HELP, _cluster_options, _positive
    from volcano_topology.views.formats import DEFAULT_LABEL_PREFIX

    export = commands.add_parser(
        "export",
        help="write the HyperNode tree as Slurm topology.conf/topology.yaml, a Kueue Topology, node labels, "
        "Graphviz DOT, a PNG/SVG picture or JSON",
    )
    export.add_argument("file", nargs="?", metavar="FILE|-", help=_INPUT_HELP)
    export.add_argument("--format", "-f", required=True, choices=FORMATS)
    export.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here instead of standard output")
    _cluster_options(export)
    slurm = export.add_argument_group("slurm-tree, slurm-yaml")
    slurm.add_argument(
        "--slurm-name-regex", metavar="REGEX", help="node names must match it (fullmatch); its named groups feed "
        "--slurm-name-template",
    )  # fmt: skip
    slurm.add_argument(
        "--slurm-name-template", default="{name}", metavar="TEMPLATE",
        help="Slurm host name of a node: {name} and the regex's named groups (default {name})",
    )  # fmt: skip
    slurm.add_argument("--block-tier", type=int, help="slurm-yaml: the tier whose HyperNodes are the blocks "
                       "(default: the lowest tier holding nodes)")  # fmt: skip
    labels = export.add_argument_group("node-labels, kueue")
    labels.add_argument("--label-prefix", default=DEFAULT_LABEL_PREFIX,
                        help=f"label keys are PREFIX/tier-N (default {DEFAULT_LABEL_PREFIX})")  # fmt: skip
    labels.add_argument("--labels-as", choices=["kubectl", "patch"], default="kubectl",
                        help="node-labels: kubectl label commands, or a server-side-apply patch (YAML)")  # fmt: skip
    labels.add_argument("--name", default="volcano-topology", help="kueue: the Topology's name; slurm-yaml: the "
                        "topologies' name prefix")  # fmt: skip
    picture = export.add_argument_group("png, svg")
    picture.add_argument("--max-leaves", type=_positive, default=48,
                         help="with more leaves than this, each parent's leaves are one box (default 48)")  # fmt: skip
    picture.add_argument("--title", default="HyperNodes", help="the picture's title")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from volcano_topology.views import formats, picture
    from volcano_topology.views.commands import EXIT_OK, EXIT_USAGE, _load_or_report
    from volcano_topology.views.progress import Progress

    if args.format == "png" and args.output is None and sys.stdout.isatty():
        print("error: --format png writes binary: give --output FILE or redirect standard output", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress()
    progress.step("reading HyperNodes …", force=True)
    view = _load_or_report(args)
    progress.done()
    if view is None:
        return EXIT_USAGE
    if not view.hypernodes:
        print("error: no HyperNodes to export", file=sys.stderr)
        return EXIT_USAGE
    for flag in view.flags:
        if not flag.fatal:
            print(f"warning: {flag.name + ': ' if flag.name else ''}{flag.message}", file=sys.stderr)
    try:
        names = formats.SlurmNames(args.slurm_name_regex, args.slurm_name_template)
        data: str | bytes
        if args.format == "json":
            data = formats.as_json(view)
        elif args.format == "dot":
            data = formats.dot(view)
        elif args.format == "slurm-tree":
            data = formats.slurm_tree(view, names)
        elif args.format == "slurm-yaml":
            data = formats.slurm_yaml(view, names, block_tier=args.block_tier, name=args.name)
        elif args.format == "kueue":
            data = formats.kueue(view, args.label_prefix, args.name)
        elif args.format == "node-labels":
            labels = formats.node_labels(view, args.label_prefix)
            if args.labels_as == "patch":
                data = formats.labels_as_patch(labels)
            else:
                data = formats.labels_as_kubectl(labels, view.tiers(), args.label_prefix)
        else:
            scene = picture.layout(view, max_leaves=args.max_leaves, title=args.title)
            if args.format == "svg":
                data = picture.svg(scene)
            else:
                data = picture.png(scene, lambda done, total: progress.step(f"drawing {done}/{total} boxes"))
                progress.done()
    except formats.ExportError as exc:
        progress.done()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is not None:
        if isinstance(data, bytes):
            args.output.write_bytes(data)
        else:
            args.output.write_text(data)
        print(f"wrote {args.output} ({args.format}, {len(view.hypernodes)} HyperNodes)", file=sys.stderr)
    elif isinstance(data, bytes):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        sys.stdout.write(data)
    return EXIT_OK
