"""``volcano-topology`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml

from volcano_topology.validation import check_document, describe, load_documents

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    code: int = args.handler(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="volcano-topology", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser(
        "validate", help="check HyperNode YAML offline with the API server's and Volcano's rules"
    )
    validate.add_argument("files", nargs="+", help="YAML files (multi-document); '-' reads standard input")
    validate.add_argument(
        "--schema-only",
        action="store_true",
        help="apply only the rules the API server enforces, not Volcano's admission",
    )
    validate.set_defaults(handler=_validate)

    providers = commands.add_parser("providers", help="list installed providers, their versions and compatibility")
    providers.add_argument(
        "--provider-path", action="append", default=[], metavar="DIR", help="extra provider directory"
    )
    providers.set_defaults(handler=_providers)

    discover = commands.add_parser("discover", help="run one provider once, offline, and print its HyperNodes")
    discover.add_argument("source", help="the provider's name (its entry point)")
    discover.add_argument(
        "--config",
        help="the provider's config: a file (its config block, or a file with networkTopologyDiscovery), "
        "or the block inline, e.g. --config '{modelFile: tiny-8}'",
    )
    discover.add_argument("--nodes", type=Path, help="nodes the provider may see: names, name->labels, or a NodeList")
    discover.add_argument("-o", "--output", choices=["yaml", "json", "tree"], default="yaml")
    discover.add_argument(
        "--provider-path", action="append", default=[], metavar="DIR", help="extra provider directory"
    )
    discover.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the provider (default 30)")
    discover.set_defaults(handler=_discover)

    _add_view_commands(commands)

    run = commands.add_parser("run", help="run the operator (cluster-wide, kopf)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--config", help="configuration file (Volcano's networkTopologyDiscovery shape)")
    source.add_argument(
        "--config-map",
        help="NAMESPACE/NAME[:KEY] of a ConfigMap holding the configuration (default: the operator's own, "
        "$POD_NAMESPACE/volcano-topology, else volcano-system/volcano-topology; not Volcano's, whose "
        "built-in sources Volcano runs itself)",
    )
    run.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
    run.add_argument("--dry-run", action="store_true", help="log what would be written; write nothing")
    run.add_argument("--provider-path", action="append", default=[], metavar="DIR", help="extra provider directory")
    run.add_argument("--health-port", type=int, default=8080, help="port of /healthz, /readyz and /metrics")
    run.add_argument(
        "--health-address", default="0.0.0.0", help="address the health port listens on (default 0.0.0.0: all)"
    )
    run.add_argument("--poll", type=float, default=5.0, help="seconds between configuration and status checks")
    run.add_argument("--drain", type=float, default=10.0, help="seconds queued writes get to finish on SIGTERM")
    run.add_argument("--identity", help="this replica's name in the leader Lease (default: host-pid-random)")
    run.add_argument("--log-json", action="store_true", help="structured JSON logs")
    run.set_defaults(handler=_run)

    plane = commands.add_parser("control-plane", help="the local kube-apiserver + etcd used by `dev` and the tests")
    plane_commands = plane.add_subparsers(dest="plane_command", required=True)
    build = plane_commands.add_parser(
        "build", help="find or build kube-apiserver and etcd into the cache (minutes the first time; then instant)"
    )
    build.set_defaults(handler=_control_plane_build)

    new_provider = commands.add_parser(
        "new-provider", help="create a provider package: pyproject, typed settings, provider, tests, README, Dockerfile"
    )
    new_provider.add_argument("name", help="the provider's name: its entry point and `source` (e.g. acme-fabric)")
    new_provider.add_argument("--dir", type=Path, help="directory to create (default: ./NAME); must be empty")
    new_provider.set_defaults(handler=_new_provider)

    dev = commands.add_parser(
        "dev",
        help="a local control plane and the operator, with a live HyperNode tree: the emulated fabric, "
        "or your own providers with --config",
    )
    dev.add_argument("--workdir", type=Path, help="where to keep certificates, data and logs (default: a temp dir)")
    dev.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="run the providers this configuration file enables (networkTopologyDiscovery shape) instead of the "
        "emulated fabric; with --source, the file is that provider's config block; editing the file reloads them",
    )
    dev.add_argument("--source", metavar="NAME", help="run this provider (its entry point) instead of the emulated one")
    dev.add_argument("--provider-path", action="append", default=[], metavar="DIR", help="extra provider directory")
    dev.add_argument(
        "--nodes",
        type=Path,
        metavar="FILE",
        help="with --config or --source: Nodes to create (names, name->labels, or a NodeList)",
    )
    dev.add_argument("--model", help="an emulated fabric model: a shipped name or a file (default small-64)")
    dev.add_argument("--interval", help="how often the provider scans (emulated: default 5s; --source: its own)")
    dev.add_argument("--health-port", type=int, default=8080)
    dev.add_argument("--once", action="store_true", help="stop after the first tree is printed (for scripts)")
    dev.set_defaults(handler=_dev)
    return parser


def _add_view_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from volcano_topology.views import commands as views

    views.add_commands(commands)


def _validate(args: argparse.Namespace) -> int:
    return validate_files(args.files, sys.stdout, sys.stderr, admission=not args.schema_only)


def validate_files(files: Sequence[str], out: TextIO, err: TextIO, *, admission: bool = True) -> int:
    worst = EXIT_OK
    checked = 0
    for file in files:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text()
            documents = list(load_documents(text))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            err.write(f"{file}: cannot read: {exc}\n")
            worst = EXIT_USAGE
            continue
        for index, document in enumerate(documents, start=1):
            checked += 1
            verdict = check_document(document, admission=admission)
            for problem in verdict.problems:
                out.write(f"{file}: document {index} ({describe(document)}): {problem}\n")
            if not verdict.ok and worst == EXIT_OK:
                worst = EXIT_INVALID
    if worst == EXIT_OK:
        err.write(f"{checked} HyperNode document(s) valid\n")
    return worst


def _providers(args: argparse.Namespace) -> int:
    from volcano_topology import registry

    found = registry.installed(args.provider_path)
    if not found:
        print(f"no providers installed (entry point group {registry.ENTRY_POINT_GROUP!r})")
        return EXIT_OK
    rows = [("NAME", "PACKAGE", "VERSION", f"CONTRACT {registry.CONTRACT_VERSION}")]
    rows += [(p.name, p.distribution, p.version, "compatible" if p.problem is None else p.problem) for p in found]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return EXIT_OK


def _discover(args: argparse.Namespace) -> int:
    """Run one provider once, offline; the provider's own exception is printed with its traceback."""
    import asyncio
    import traceback

    from volcano_topology import registry
    from volcano_topology.discover import DiscoveryError, discover_once, load_nodes, provider_config, render

    loaded, errors = registry.load([args.source], args.provider_path)
    if errors:
        print(f"error: {errors[0]}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = provider_config(config_text(args.config), args.source) if args.config else {}
        nodes = load_nodes(args.nodes.read_text()) if args.nodes else {}
    except (OSError, yaml.YAMLError, DiscoveryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        provider = registry.instantiate(loaded[args.source], config)
    except registry.ProviderConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # the provider's constructor raised
        print(f"error: provider {args.source}: constructing {loaded[args.source].target} raised:", file=sys.stderr)
        sys.stderr.write("".join(traceback.format_exception(exc)))
        return EXIT_INVALID
    try:
        from volcano_topology.views.progress import Progress, ticking

        # A line ticking on a terminal while a large fabric is discovered; nothing when stderr is piped.
        work = discover_once(args.source, provider, nodes, within=args.timeout)
        result = asyncio.run(ticking(Progress(), f"discovering with {args.source}", work))
    except DiscoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.provider_error is not None:
            sys.stderr.write("".join(traceback.format_exception(exc.provider_error)))
        return EXIT_INVALID if exc.provider_failed else EXIT_USAGE
    for problem in result.problems:
        print(f"{args.source}: {problem}", file=sys.stderr)
    if result.problems:
        return EXIT_INVALID
    sys.stdout.write(render(result.hypernodes, args.output))
    print(f"{args.source}: {len(result.hypernodes)} HyperNodes", file=sys.stderr)
    return EXIT_OK


def config_text(value: str) -> str:
    """``--config`` names a file, or is the YAML block itself (anything that is not an existing path)."""
    path = Path(value)
    if path.exists() or not any(mark in value for mark in "{:\n"):
        return path.read_text()  # a missing path without YAML in it: say the file is missing
    return value


def _run(args: argparse.Namespace) -> int:
    from volcano_topology.config import ConfigError
    from volcano_topology.controller import ConfigSource
    from volcano_topology.observability import configure_logging
    from volcano_topology.operator import RunOptions, run

    configure_logging(logging.INFO if args.verbose else logging.WARNING, args.log_json)
    try:
        source = ConfigSource.parse(args.config, args.config_map or (None if args.config else default_config_map()))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = RunOptions(
        source, kubeconfig=args.kubeconfig, dry_run=args.dry_run, provider_paths=tuple(args.provider_path),
        health_port=args.health_port, health_address=args.health_address, poll=args.poll, drain=args.drain,
    )  # fmt: skip
    if args.identity:
        options.identity = args.identity
    return run(options)


def _control_plane_build(_: argparse.Namespace) -> int:
    import time

    from volcano_topology.controlplane.build import BuildError, ensure_binaries

    started = time.monotonic()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        found = ensure_binaries(progress=progress)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"kube-apiserver {found.kubernetes_version}: {found.kube_apiserver}")
    print(f"etcd {found.etcd_version}: {found.etcd}")
    print(f"control plane ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return EXIT_OK


def _new_provider(args: argparse.Namespace) -> int:
    from volcano_topology.templates import Names, TemplateError, render_provider

    directory = args.dir or Path(args.name)
    try:
        names = Names.of(args.name)
        written = render_provider(args.name, directory)
    except (TemplateError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(path)
    print(
        f"\nprovider {names.name!r} ({names.distribution}, module {names.module}) created in {directory}. Next:\n"
        f"  cd {directory} && pip install -e '.[test]' && pytest && mypy\n"
        f"  volcano-topology discover {names.name} --config example-config.yaml -o tree",
        file=sys.stderr,
    )
    return EXIT_OK


def default_config_map() -> str:
    import os

    return f"{os.environ.get('POD_NAMESPACE') or 'volcano-system'}/volcano-topology"


def _dev(args: argparse.Namespace) -> int:
    from volcano_topology.devmode import DevOptions, run_dev

    vendor = args.config is not None or args.source is not None
    for given, option in ((args.provider_path, "--provider-path"), (args.nodes, "--nodes")):
        if given and not vendor:
            print(f"error: {option} needs --config FILE or --source NAME: which providers to run", file=sys.stderr)
            return EXIT_USAGE
    if vendor and args.model:
        print("error: --model is the emulated fabric's; with --config or --source it has no use", file=sys.stderr)
        return EXIT_USAGE
    if args.source is None and args.config is not None and args.interval:
        print("error: with --config FILE, set each provider's interval in the file's entries", file=sys.stderr)
        return EXIT_USAGE
    return run_dev(DevOptions(
        args.workdir, args.model or "small-64", args.interval or "5s", args.health_port, args.once,
        config=args.config, provider_paths=tuple(args.provider_path), source=args.source,
        source_interval=args.interval, nodes=args.nodes,
    ))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
