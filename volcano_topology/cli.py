"""``volcano-topology`` command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
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

    dev = commands.add_parser("dev", help="start a local kube-apiserver + etcd with the HyperNode CRD installed")
    dev.add_argument("--workdir", type=Path, help="where to keep certificates, data and logs (default: a temp dir)")
    dev.set_defaults(handler=_dev)
    return parser


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


def _dev(args: argparse.Namespace) -> int:
    from volcano_topology import kube
    from volcano_topology.controlplane.cluster import LocalControlPlane

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="volcano-topology-dev-"))
    stop = threading.Event()
    # A stop request, not an exception: a second Ctrl-C must not cut the cleanup short.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"starting kube-apiserver + etcd in {workdir} (the first run builds them: several minutes)", flush=True)
    with LocalControlPlane(workdir) as plane:
        kube.apply_crd(kube.api_client(plane.kubeconfig))
        print(f"control plane ready at {plane.url} in {plane.started_seconds:.1f}s; HyperNode CRD installed")
        print(f"  export KUBECONFIG={plane.kubeconfig}")
        print("  kubectl get hypernodes")
        print("Ctrl-C stops everything this command started.", flush=True)
        stop.wait()
        print("stopping kube-apiserver and etcd", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
