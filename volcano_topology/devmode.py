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

With ``--source NAME [--config FILE]`` the file is just that provider's ``config`` block (the
one ``discover NAME --config FILE`` takes): dev writes the operator's configuration around it
into its workdir and rewrites it whenever the file changes, so editing reloads the same way.
In both, ``--nodes FILE`` creates Nodes first (the formats ``discover --nodes`` takes).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import yaml
from kubernetes import client

from volcano_topology import kube, registry
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.config import (
    ConfigError,
    Configuration,
    LeaderElectionSettings,
    parse_configuration,
    yaml_problem,
)
from volcano_topology.controller import ConfigSource
from volcano_topology.controlplane.cluster import LocalControlPlane
from volcano_topology.operator import RunOptions, build_registry
from volcano_topology.views.model import Topology
from volcano_topology.views.treeview import TreeOptions, render_tree


@dataclass
class DevOptions:
    workdir: Path | None
    model: str = "small-64"
    interval: str = "5s"
    health_port: int = 8080
    once: bool = False
    config: Path | None = None  # the operator's configuration shape: run its providers, not the emulated fabric
    provider_paths: tuple[str, ...] = ()
    source: str | None = None  # run this provider; ``config`` (optional) is then its config block
    # With ``source``: the entry's interval (None: the provider's own).
    source_interval: str | None = None
    nodes: Path | None = None  # Nodes to create for the providers to see (names, name -> labels, or a NodeList)


class DevConfigError(Exception):
    """``--config`` cannot run: the message says why, naming the file and the provider."""


def run_dev(options: DevOptions) -> int:
    if options.source is not None or options.config is not None:
        given, follow = options.config, None
        try:
            if options.source is not None:  # the file, if any, is the provider's config block
                wrap = _wrapper(options.source, options.source_interval)
                label = str(given) if given is not None else f"--source {options.source}"
                text = wrap(_read(given) if given is not None else "", label)
                follow = _Follow(given.resolve() if given is not None else None, label, wrap, text)
            else:
                assert given is not None
                label, text = str(given), _read(given)
            configuration = check_configuration(text, label, options.provider_paths)
            wanted_nodes = read_nodes(options.nodes) if options.nodes is not None else {}
        except DevConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if follow is not None:
            return _run_vendor(options, configuration, None, follow, wanted_nodes)
        assert given is not None
        return _run_vendor(options, configuration, given.resolve(), None, wanted_nodes)
    try:
        from volcano_topology_emulated.nodes import apply_nodes
        from volcano_topology_emulated.provider import EmulatedSettings
    except ImportError:
        print("dev mode needs the emulated provider: pip install ./providers/emulated", file=sys.stderr)
        return 2
    settings = EmulatedSettings.model_validate({"modelFile": options.model})
    started = time.monotonic()
    workdir, plane = _start_control_plane(options)
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


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise DevConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_nodes(path: Path) -> dict[str, dict[str, str]]:
    """Nodes as ``discover --nodes`` takes them: a list of names, a name -> labels mapping, or a NodeList."""
    from volcano_topology.discover import DiscoveryError, load_nodes

    text = _read(path)
    try:
        return load_nodes(text)
    except yaml.YAMLError as exc:
        raise DevConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from exc
    except (DiscoveryError, AttributeError) as exc:
        raise DevConfigError(f"{path}: {exc}") from exc


def create_nodes(api: client.ApiClient, nodes: dict[str, dict[str, str]]) -> None:
    """Create (or relabel) these Nodes: the cluster view a provider gets, as in a real cluster."""
    core = client.CoreV1Api(api)
    for name, labels in nodes.items():
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
        core.patch_node(
            name, body, field_manager="volcano-topology-dev", force=True, _content_type="application/apply-patch+yaml"
        )


def _wrapper(source: str, interval: str | None) -> Callable[[str, str], str]:
    """Turns a provider's config block (YAML text) into an operator configuration running just that provider."""

    def wrap(text: str, label: str) -> str:
        try:
            block = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DevConfigError(f"{label}: not valid YAML: {yaml_problem(exc)}") from exc
        if block is None:
            block = {}
        if not isinstance(block, dict):
            raise DevConfigError(f"{label}: the config block of provider {source!r} must be a mapping")
        if "networkTopologyDiscovery" in block:
            raise DevConfigError(
                f"{label}: this is a whole configuration (networkTopologyDiscovery): give it with --config alone, "
                "without --source"
            )
        entry: dict[str, Any] = {"source": source, "enabled": True}
        if interval is not None:
            entry["interval"] = interval
        entry["config"] = block
        operator = {"leaderElection": {"enabled": False}}
        return yaml.safe_dump({"networkTopologyDiscovery": [entry], "operator": operator}, sort_keys=False)

    return wrap


def check_configuration(text: str, label: str, provider_paths: tuple[str, ...] = ()) -> Configuration:
    """The configuration in ``text`` if it can run: parsed, each enabled provider found, its ``config`` valid."""
    try:
        configuration = parse_configuration(text)
    except ConfigError as exc:
        raise DevConfigError(f"{label}: {exc}") from exc
    enabled = configuration.enabled()
    if not enabled:
        raise DevConfigError(f"{label}: no enabled entry in networkTopologyDiscovery, so no provider to run")
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
        raise DevConfigError(f"{label}: " + "; ".join(problems))
    return configuration


@dataclass
class _Follow:
    """Keeps the operator's configuration in step with a provider's config block (``--source``)."""

    block: Path | None  # None: no --config, the provider runs with its defaults
    label: str  # the file as the user named it
    wrap: Callable[[str, str], str]
    written: str  # the operator configuration last written
    target: Path | None = None

    def write(self, target: Path) -> None:
        self.target = target
        target.write_text(self.written)

    async def run(self) -> None:
        if self.block is None:
            return
        assert self.target is not None
        seen, unreadable = self.block.read_text(), False
        while True:
            await asyncio.sleep(1.0)
            try:
                text = await asyncio.to_thread(self.block.read_text)
                unreadable = False
            except OSError as exc:
                if not unreadable:
                    print(f"error: {self.label}: cannot read: {exc.strerror or exc}", file=sys.stderr, flush=True)
                unreadable = True
                continue
            if text == seen:
                continue
            seen = text
            try:
                written = self.wrap(text, self.label)
            except DevConfigError as exc:
                print(f"error: {exc} (the provider keeps its last good config)", file=sys.stderr, flush=True)
                continue
            if written != self.written:
                partial = self.target.with_name(self.target.name + ".new")
                partial.write_text(written)
                partial.replace(self.target)  # the operator never reads half a file
                self.written = written
                say(f"{self.label} changed: the operator reloads it")


def _run_vendor(
    options: DevOptions,
    configuration: Configuration,
    config: Path | None,
    follow: _Follow | None,
    nodes: dict[str, dict[str, str]],
) -> int:
    """Run the providers of ``configuration``: from the user's file ``config``, else from a file in the workdir."""
    started = time.monotonic()
    workdir, plane = _start_control_plane(options)
    try:
        api = kube.api_client(plane.kubeconfig)
        kube.apply_crd(api)
        try:
            create_nodes(api, nodes)
        except client.ApiException as exc:
            print(f"error: {options.nodes}: the API server refused a Node: {exc.reason}: {exc.body}", file=sys.stderr)
            return 2
        if nodes:
            say(f"{len(nodes)} Nodes from {options.nodes}")
        sources = ", ".join(configuration.enabled())
        if config is not None:
            say(f"control plane at {plane.url}; CRD installed; providers from {config}: {sources}")
        else:
            assert follow is not None
            config = workdir / "volcano-topology.yaml"
            follow.write(config)
            given = f"config from {follow.block}" if follow.block is not None else "its default config"
            say(f"control plane at {plane.url}; CRD installed; provider {sources} with {given}")
        say(f"  export KUBECONFIG={plane.kubeconfig}")
        say(f"  kubectl get hypernodes      # metrics: http://127.0.0.1:{options.health_port}/metrics")
        if follow is not None and follow.block is not None:
            say(f"  config: {follow.block} (edit it: the operator reloads it within 3s; its configuration: {config})")
        else:
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
        asyncio.run(
            _operate(run_options, api, startup, started, options.once, follow.run() if follow is not None else None)
        )
    finally:
        say("stopping kube-apiserver and etcd")
        plane.stop()
    return 0


async def _operate(
    options: RunOptions,
    api: client.ApiClient,
    configuration: Configuration,
    started: float,
    once: bool,
    also: Coroutine[Any, Any, None] | None = None,
) -> None:
    memo = kopf.Memo(options=options, api=api, config=configuration)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_print_tree(api, started, stop if once else None))]
    if also is not None:
        tasks.append(asyncio.create_task(also))
    try:
        await kopf.operator(registry=build_registry(), clusterwide=True, standalone=True, memo=memo, stop_flag=stop)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
        # the same renderer as `volcano-topology tree`; colour only on a terminal
        text = render_tree(Topology.of(hypernodes), TreeOptions(color=sys.stdout.isatty())) if hypernodes else ""
        if text and text == previous and text != shown:
            when = f"first tree after {time.monotonic() - started:.1f}s" if first else time.strftime("%H:%M:%S")
            say(f"--- HyperNodes ({len(hypernodes)}; {when}) ---\n{text}")
            shown, first = text, False
            if stop is not None:
                stop.set()
                return
        previous = text


def _start_control_plane(options: DevOptions) -> tuple[Path, LocalControlPlane]:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="volcano-topology-dev-"))
    say(f"starting kube-apiserver + etcd in {workdir} (the first run builds them: several minutes)")
    plane = LocalControlPlane(workdir)
    plane.start()
    return workdir, plane


def say(message: str) -> None:
    print(message, flush=True)
