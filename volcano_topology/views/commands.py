"""``volcano-topology tree``, ``export`` and ``diff``: argument parsing and I/O around the pure views."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_USAGE = 2

_INPUT_HELP = (
    "HyperNodes from a file (YAML/JSON, e.g. discover's output), or '-' for standard input; default: the cluster"
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tree = commands.add_parser(
        "tree", help="show the HyperNode tree (the cluster's, a file's or discover's) with tiers, owners and problems"
    )
    tree.add_argument("file", nargs="?", metavar="FILE|-", help=_INPUT_HELP)
    _cluster_options(tree)
    tree.add_argument("--depth", type=_positive, help="show this many levels; deeper ones are folded and counted")
    tree.add_argument("--max-children", type=_positive, help="show at most this many children of each HyperNode")
    tree.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="default: on a terminal")
    tree.set_defaults(handler=_tree)

    from volcano_topology.views.exports import add_export_command

    add_export_command(commands)

    from volcano_topology.views.diff import add_diff_command

    add_diff_command(commands)


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--owner", metavar="SOURCE", help="only the HyperNodes this provider (or Volcano source) owns")
    parser.add_argument(
        "--nodes",
        type=Path,
        metavar="FILE",
        help="the cluster's Nodes, for a file input (names, name->labels, NodeList)",
    )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def use_color(choice: str, stream: TextIO) -> bool:
    """``auto``: colour on a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def load_input(args: argparse.Namespace) -> Any:
    """The Topology view of the input the arguments name; raises ViewInputError or OSError."""
    from volcano_topology.discover import DiscoveryError, load_nodes
    from volcano_topology.views.model import Topology
    from volcano_topology.views.source import ViewInputError, parse_objects, read_cluster

    nodes: dict[str, dict[str, str]] | None = None
    if args.file is None:
        if args.nodes is not None:
            raise ViewInputError("--nodes is for a file input: the cluster's own Nodes are read from the cluster")
        hypernodes, nodes = read_cluster(args.kubeconfig)
    else:
        label = "standard input" if args.file == "-" else args.file
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        hypernodes, nodes = parse_objects(text, label)
        if args.nodes is not None:
            try:
                nodes = load_nodes(args.nodes.read_text())
            except DiscoveryError as exc:
                raise ViewInputError(str(exc)) from exc
    if args.owner is not None:
        everything = Topology.of(hypernodes)
        hypernodes = {n: h for n, h in hypernodes.items() if everything.owner(n) == args.owner}
    return Topology.of(hypernodes, nodes)


def _tree(args: argparse.Namespace) -> int:
    from volcano_topology.views.treeview import TreeOptions, render_tree

    view = _load_or_report(args)
    if view is None:
        return EXIT_USAGE
    if not view.hypernodes:
        print("no HyperNodes", file=sys.stderr)
        return EXIT_OK
    options = TreeOptions(args.depth, args.max_children, use_color(args.color, sys.stdout))
    sys.stdout.write(render_tree(view, options))
    return EXIT_OK


def _load_or_report(args: argparse.Namespace) -> Any:
    from volcano_topology.views.source import ViewInputError

    try:
        return load_input(args)
    except (OSError, ViewInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    except Exception as exc:  # the cluster: kubeconfig missing, API server unreachable or refusing
        print(f"error: cannot read the cluster: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
