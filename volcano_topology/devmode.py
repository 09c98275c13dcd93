"""``volcano-topology dev``: everything on one machine, for a first look and for development.

Starts the local control plane (built on first use), installs the CRD, creates the Nodes of
an emulated fabric, and runs the operator with the emulated provider against it. The
HyperNode tree is printed when it first settles and again whenever it changes. Ctrl-C stops
everything this command started.

With ``--config FILE`` (the operator's configuration shape) it runs the providers that file
enables instead, found in the installed packages, in ``--provider-path`` directories and in
the file's ``operator.providerPaths``: a vendor's local loop. The operator reads that very
file, so editing it restarts the providers whose entry changed. The file is checked before
anything starts (YAML, every enabled provider found and its ``config`` valid). Leader
election stays off whatever the file says (one operator on a private control plane); the
rest of its ``operator`` block applies.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import yaml
from kubernetes import client

from volcano_topology import kube, registry
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.config import ConfigError, Configuration, LeaderElectionSettings, parse_configuration
from volcano_topology.controller import ConfigSource
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.discover import render_tree
from volcano_topology.operator import RunOptions, build_registry


@dataclass
class DevOptions:
    workdir: Path | None
    model: str = "small-64"
    interval: str = "5s"
    health_port: int = 8080
    once: bool = False
    config: Path | None = None  # the operator's configuration shape: run its providers, not the emulated fabric
    provider_paths: tuple[str, ...] = ()


class DevConfigError(Exception):
    """``--config`` cannot run: the message says why, naming the file and the provider."""


def run_dev(options: DevOptions) -> int:
    if options.config is not None:
        try:
            configuration = check_config(options.config, options.provider_paths)
        except DevConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _run_vendor(options, options.config.resolve(), configuration)
    try:
        from volcano_topology_emulated.nodes import apply_nodes
        from volcano_topology_emulated.provider import EmulatedSettings
    except ImportError:
        print("dev mode needs the emulated provider: pip install ./providers/emulated", file=sys.stderr)
        return 2
    settings = EmulatedSettings.model_validate({"modelFile": options.model})
    started = time.monotonic()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="volcano-topology-dev-"))
    say(f"starting kube-apiserver + etcd in {workdir} (the first run builds them: several minutes)")
    plane = LocalControlPlane(workdir)
    plane.start()
    try:
        api = kube.api_client(plane.kubeconfig)
        kube.apply_crd(api)
        nodes = apply_nodes(api, settings.fabric)
        config = workdir / "volcano-topology.yaml"
        config.write_text(yaml.safe_dump({
            "networkTopologyDiscovery": [
                {"source": "emulated", "enabled": True, "interval": options.interval,
                 "config": {"modelFile": settings.model_file}},
            ],
            "operator": {"leaderElection": {"enabled": False}, "status": {"nodeCount": True}},
        }, sort_keys=False))  # fmt: skip
        say(f"control plane at {plane.url}; CRD installed; {nodes} emulated Nodes from model {options.model}")
        say(f"  export KUBECONFIG={plane.kubeconfig}")
        say(f"  kubectl get hypernodes      # metrics: http://127.0.0.1:{options.health_port}/metrics")
        say(f"  configuration: {config} (edit it: the operator reloads it)")
        say("Ctrl-C stops everything this command started.")
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        # Loopback only: a developer's machine is not a pod, and its health port is nobody else's business.
        run_options = RunOptions(ConfigSource(file=config), kubeconfig=str(plane.kubeconfig),
                                 health_port=options.health_port, health_address="127.0.0.1", poll=2.0)  # fmt: skip
        asyncio.run(_operate(run_options, api, parse_configuration(config.read_text()), started, options.once))
    finally:
        say("stopping kube-apiserver and etcd")
        plane.stop()
    return 0


def check_config(path: Path, provider_paths: tuple[str, ...] = ()) -> Configuration:
    """The configuration in ``path`` if it can run: parsed, each enabled provider found, its ``config`` valid."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DevConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        configuration = parse_configuration(text)
    except ConfigError as exc:
        raise DevConfigError(f"{path}: {exc}") from exc
    enabled = configuration.enabled()
    if not enabled:
        raise DevConfigError(f"{path}: no enabled entry in networkTopologyDiscovery, so no provider to run")
    paths = [*provider_paths, *configuration.operator.provider_paths]
    loaded, errors = registry.load(list(enabled), paths)
    problems = [str(error) for error in errors]
    for name, provider in loaded.items():
        try:
            registry.instantiate(provider, enabled[name].config)
        except registry.ProviderConfigError as exc:
            problems.append(str(exc))
    if problems:
        if any(name not in loaded for name in enabled):
            found = sorted(p.name for p in registry.installed(paths))
            where = ", ".join(paths) if paths else "no --provider-path or operator.providerPaths"
            problems.append(f"providers found (installed and in {where}): {', '.join(found) or 'none'}")
        raise DevConfigError(f"{path}: " + "; ".join(problems))
    return configuration


def _run_vendor(options: DevOptions, config: Path, configuration: Configuration) -> int:
    started = time.monotonic()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="volcano-topology-dev-"))
    say(f"starting kube-apiserver + etcd in {workdir} (the first run builds them: several minutes)")
    plane = LocalControlPlane(workdir)
    plane.start()
    try:
        api = kube.api_client(plane.kubeconfig)
        kube.apply_crd(api)
        sources = ", ".join(configuration.enabled())
        say(f"control plane at {plane.url}; CRD installed; providers from {config}: {sources}")
        say(f"  export KUBECONFIG={plane.kubeconfig}")
        say(f"  kubectl get hypernodes      # metrics: http://127.0.0.1:{options.health_port}/metrics")
        say(f"  configuration: {config} (edit it: the operator reloads it every 2s; leader election off)")
        say("Ctrl-C stops everything this command started.")
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        # The operator reads the user's file itself, so an edit reloads as in production. Only the startup
        # reading is adjusted: a single operator on a private control plane campaigns for no lease.
        no_election = configuration.operator.model_copy(
            update={"leader_election": LeaderElectionSettings(enabled=False)}
        )
        startup = configuration.model_copy(update={"operator": no_election})
        run_options = RunOptions(ConfigSource(file=config), kubeconfig=str(plane.kubeconfig),
                                 provider_paths=options.provider_paths, health_port=options.health_port,
                                 health_address="127.0.0.1", poll=2.0)  # fmt: skip
        asyncio.run(_operate(run_options, api, startup, started, options.once))
    finally:
        say("stopping kube-apiserver and etcd")
        plane.stop()
    return 0


async def _operate(
    options: RunOptions, api: client.ApiClient, configuration: Configuration, started: float, once: bool
) -> None:
    memo = kopf.Memo(options=options, api=api, config=configuration, watch_nodes=True)
    stop = asyncio.Event()
    printer = asyncio.create_task(_print_tree(api, started, stop if once else None))
    try:
        await kopf.operator(
            registry=build_registry(watch_nodes=True), clusterwide=True, standalone=True, memo=memo, stop_flag=stop
        )
    finally:
        printer.cancel()


async def _print_tree(api: client.ApiClient, started: float, stop: asyncio.Event | None) -> None:
    """Print the tree once it has settled (same two polls in a row), then whenever it changes."""
    objects = client.CustomObjectsApi(api)
    shown, previous, first = "", "", True
    while True:
        await asyncio.sleep(1.0)
        try:
            listed: Any = await asyncio.to_thread(objects.list_cluster_custom_object, GROUP, VERSION, PLURAL)
        except client.ApiException:
            continue
        hypernodes = {i["metadata"]["name"]: HyperNode.model_validate(i) for i in listed["items"]}
        text = render_tree(hypernodes) if hypernodes else ""
        if text and text == previous and text != shown:
            when = f"first tree after {time.monotonic() - started:.1f}s" if first else time.strftime("%H:%M:%S")
            say(f"--- HyperNodes ({len(hypernodes)}; {when}) ---\n{text}")
            shown, first = text, False
            if stop is not None:
                stop.set()
                return
        previous = text


def say(message: str) -> None:
    print(message, flush=True)
