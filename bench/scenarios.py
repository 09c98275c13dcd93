"""The scenarios of issue 15, run against one real control plane per fabric group.

Every scenario is a *window*: counters are read at its start and end. Inside it the harness's own
requests (the checker's list/watch, lease reads, its verification) are tallied and subtracted,
so ``requests`` are the operator's (or, for the baseline, the baseline client's plus nothing else).
``seconds`` is the time until the checker's single watch showed exactly the desired state.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import baseline, fabrics
from bench.kubehttp import Api
from bench.measure import (
    HYPERNODES,
    Checker,
    Probe,
    Snapshot,
    Wanted,
    cpu_seconds,
    hypernode_lists,
    hypernode_writes,
    reset_peak_rss,
    rss_kib,
)
from bench.operator_process import INTERVAL, LEASE, Operator, entry, provider_dir, write_config, write_model
from volcano_topology import kube
from volcano_topology.controlplane.cluster import LocalControlPlane

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/default/leases/volcano-topology"
PER_SIZE = ("baseline", "cold", "steady", "restart", "move-node", "remove-leaf", "move-10pct", "failover", "node-count")
GROUPS = ("four-providers", "rails")
ALL = PER_SIZE + GROUPS
MiB = 1024
SETTLE = 0.5


@dataclass
class Options:
    scenarios: tuple[str, ...] = ALL
    move_reps: int = 3
    baseline_reps: int = 2
    concurrency: int = 8  # the operator's default `concurrency` (volcano_topology/config.py)
    profile: tuple[str, ...] = ()
    profile_dir: Path | None = None
    node_count_size: int = 16384
    lease: str = LEASE


@dataclass
class Window:
    """One scenario's counters; operators started inside it are added, ones stopped inside it retired."""

    bench: Bench
    before: Snapshot
    ops: dict[int, list[Any]] = field(default_factory=dict)  # id -> [operator, cpu at start, cpu at end, peak]

    def add(self, op: Operator, started_inside: bool = False) -> None:
        reset_peak_rss(op.pid)
        self.ops[id(op)] = [op, 0.0 if started_inside else cpu_seconds(op.pid), None, 0]

    def retire(self, op: Operator) -> None:
        """Read an operator's counters now, before it is stopped or killed."""
        slot = self.ops[id(op)]
        slot[2], slot[3] = cpu_seconds(op.pid), rss_kib(op.pid)

    def close(self, scenario: str, **fields: Any) -> dict[str, Any]:
        assert self.bench.probe is not None
        for slot in self.ops.values():
            if slot[2] is None:
                slot[2], slot[3] = cpu_seconds(slot[0].pid), rss_kib(slot[0].pid)
        after = self.bench.probe.snapshot()
        delta = self.bench.probe.delta(self.before, after)
        requests = delta["requests"]
        record = {
            **self.bench.labels,
            "scenario": scenario,
            **fields,
            "windowSeconds": round(after.at - self.before.at, 2),
            "hypernodeWrites": hypernode_writes(requests),
            "hypernodeLists": hypernode_lists(requests),
            **delta,
            "operatorCpuSeconds": round(sum(s[2] - s[1] for s in self.ops.values()), 2),
            "operatorPeakRssMiB": round(max((s[3] for s in self.ops.values()), default=0) / MiB, 1),
        }
        self.bench.record(record)
        return record


@dataclass
class Bench:
    """One control plane, one checker, the records of every scenario run on it."""

    root: Path
    options: Options
    sink: Callable[[dict[str, Any]], None]
    labels: dict[str, Any] = field(default_factory=dict)
    cp: LocalControlPlane | None = None
    api: Api | None = None
    checker: Checker | None = None
    probe: Probe | None = None
    operators: list[Operator] = field(default_factory=list)

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Bench:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cp = LocalControlPlane(self.root / "control-plane")
        self.cp.start()
        assert self.cp.pki is not None
        self.api = Api.from_url(self.cp.url, self.cp.admin_token, str(self.cp.pki.ca_cert))
        admin = kube.api_client(str(self.cp.kubeconfig))
        kube.apply_crd(admin)
        admin.close()  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 30  # the first list after a CRD can be "429 storage is (re)initializing"
        while self.api.send("GET", HYPERNODES)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # the first create within 2 s of a CRD becoming Established is delayed 2 s on purpose
        apiserver, etcd = (getattr(self.cp, n).popen for n in ("_apiserver", "_etcd"))
        self.probe = Probe(self.api, {"kube-apiserver": apiserver.pid, "etcd": etcd.pid})
        self.checker = Checker(self.api).start()
        return self

    def __exit__(self, *_: object) -> None:
        for op in self.operators:
            op.stop()
        if self.checker is not None:
            self.checker.stop()
        if self.cp is not None:
            self.cp.stop()

    def record(self, record: dict[str, Any]) -> None:
        self.sink(record)
        seconds = record.get("seconds")
        print(f"  {record['fabric']:>14} {record['scenario']:<22} "
              f"{'-' if seconds is None else f'{seconds:7.2f}s'}  writes {record['hypernodeWrites']:5d}  "
              f"lists {record['hypernodeLists']:3d}  op cpu {record['operatorCpuSeconds']:6.2f}s  "
              f"rss {record['operatorPeakRssMiB']:6.1f} MiB  {record.get('note', '')}", flush=True)  # fmt: skip

    @contextmanager
    def window(self) -> Iterator[Window]:
        assert self.probe is not None
        yield Window(self, self.probe.snapshot())

    # -- helpers --------------------------------------------------------------------------

    def operator(self, config: Path, identity: str = "bench-a", provider_path: Path | None = None) -> Operator:
        assert self.cp is not None
        op = Operator(self.cp.kubeconfig, config, self.root, identity=identity, provider_path=provider_path)
        self.operators.append(op)
        return op.start()

    def profiled(self, scenario: str, op: Operator) -> None:
        if scenario in self.options.profile and self.options.profile_dir is not None:
            self.options.profile_dir.mkdir(parents=True, exist_ok=True)
            stem = f"profile-{self.labels['fabric']}-{scenario}"
            out = self.options.profile_dir / f"{stem}.speedscope.json"
            for rep in range(2, 100):  # a repeated scenario keeps every repetition's profile
                if not out.exists():
                    break
                out = self.options.profile_dir / f"{stem}-{rep}.speedscope.json"
            op.start_profile(out)
            print(f"  py-spy -> {out}", flush=True)

    def converge(self, wanted: dict[str, Wanted], timeout: float) -> float | None:
        assert self.checker is not None
        found = self.checker.wait(timeout)
        if found is None:
            print(f"  NOT CONVERGED within {timeout:.0f}s: {self.checker.describe_bad()}", flush=True)
        # The API server counts a request when its answer is sent, which can be after the watch event
        # it caused reached the checker: let the last answers land in this window.
        time.sleep(SETTLE)
        return found

    def clear(self, sources: set[str]) -> None:
        """Every operator stopped, every managed HyperNode deleted (not measured)."""
        assert self.api is not None and self.checker is not None
        for op in self.operators:
            op.stop()
        self.api.must("DELETE", f"{HYPERNODES}?labelSelector=app.kubernetes.io/managed-by%3Dvolcano-topology")
        self.checker.expect_empty(sources)
        if self.checker.wait(180) is None:
            raise RuntimeError(f"HyperNodes not deleted: {self.checker.describe_bad()}")
        self.api.json("DELETE", LEASE_PATH)

    def timeout(self, objects: int) -> float:
        return 60.0 + 0.15 * objects

    # -- scenarios ------------------------------------------------------------------------

    def baseline(self, manifests: list[dict[str, Any]], wanted: dict[str, Wanted], sources: set[str]) -> None:
        assert self.api is not None and self.checker is not None
        # A client of its own: its requests are the subject here, so they are not subtracted as the harness's.
        client = Api(self.api.host, self.api.port, self.api.token, self.api.cafile)
        for rep in range(self.options.baseline_reps):
            self.checker.expect(wanted)
            with self.window() as w:
                started = time.monotonic()
                applied = baseline.apply_all(client, manifests, self.options.concurrency)
                done = self.converge(wanted, self.timeout(len(wanted)))
                w.close("baseline", rep=rep, seconds=None if done is None else round(done - started, 2),
                        clientSeconds=round(applied, 2), converged=done is not None,
                        note=f"{self.options.concurrency} threads: apply spec, then apply status")  # fmt: skip
            self.clear(sources)

    def cold(self, config: Path, wanted: dict[str, Wanted], provider_path: Path | None = None) -> Operator:
        assert self.checker is not None
        self.checker.expect(wanted)
        with self.window() as w:
            op = self.operator(config, provider_path=provider_path)
            w.add(op, started_inside=True)
            self.profiled("cold", op)
            done = self.converge(wanted, self.timeout(len(wanted)))
            first = self.checker.first_event_at
            op.stop_profile()
            w.close("cold", seconds=None if done is None else round(done - op.started, 2),
                    fromFirstWrite=None if done is None or first is None else round(done - first, 2),
                    converged=done is not None)  # fmt: skip
        return op

    def steady(self, op: Operator, wanted: dict[str, Wanted]) -> None:
        assert self.checker is not None
        time.sleep(2)  # the last status echoes of the previous scenario
        with self.window() as w:
            w.add(op)
            self.profiled("steady", op)
            time.sleep(2 * INTERVAL)
            op.stop_profile()
            still = self.checker.wait(0.1) is not None
            w.close("steady", seconds=None, converged=still, note=f"{2 * INTERVAL:g}s = two scan intervals")

    def restart(self, op: Operator, config: Path, wanted: dict[str, Wanted],
                provider_path: Path | None = None) -> Operator:  # fmt: skip
        assert self.checker is not None
        op.stop()
        with self.window() as w:
            new = self.operator(config, provider_path=provider_path)
            w.add(new, started_inside=True)
            self.profiled("restart", new)
            ready = new.wait_ready(self.timeout(len(wanted)))
            time.sleep(2 * INTERVAL)  # two scans after ready: the snapshot must cause no write
            new.stop_profile()
            still = self.checker.wait(0.1) is not None
            w.close("restart", seconds=None if ready is None else round(ready - new.started, 2), converged=still,
                    note=f"seconds: until /readyz; window: + {2 * INTERVAL:g}s")  # fmt: skip
        return new

    def change(self, scenario: str, op: Operator, model_file: Path, model: dict[str, Any], source: str,
               rep: int = 0) -> float | None:  # fmt: skip
        """Write the changed model (the provider's file watch picks it up) and time the convergence."""
        assert self.checker is not None
        wanted = fabrics.desired(model, source)
        self.checker.expect(wanted)
        with self.window() as w:
            w.add(op)
            self.profiled(scenario, op)
            started = time.monotonic()
            write_model(model_file, model)
            done = self.converge(wanted, self.timeout(len(wanted)))
            first = self.checker.first_event_at
            # When the provider made the snapshot the operator applied (its wall clock, this machine's too).
            made = op.metric("volcano_topology_last_applied_event_timestamp_seconds", provider=source)
            time.sleep(1)  # trailing writes belong to this scenario
            op.stop_profile()
            seconds = None if done is None else round(done - started, 2)
            reported = None
            if done is not None and made is not None:
                reported = round(time.time() - (time.monotonic() - done) - made, 2)
            w.close(scenario, rep=rep, seconds=seconds, converged=done is not None,
                    firstWriteAfter=None if first is None else round(first - started, 2),
                    fromProviderEvent=reported,
                    note="seconds: from the model file write (watch period 0.2 s + scan); "
                         "fromProviderEvent: from the provider making its snapshot")  # fmt: skip
        return seconds

    def failover(self, model_file: Path, model: dict[str, Any], source: str) -> None:
        assert self.checker is not None and self.api is not None
        wanted = fabrics.desired(model, source)
        self.clear({source})
        write_model(model_file, model)
        config = write_config(self.root / "config-leader.yaml", [entry(source, model_file)],
                              lease=self.options.lease, concurrency=self.options.concurrency)  # fmt: skip
        self.checker.expect(wanted)
        with self.window() as w:
            a, b = self.operator(config, "bench-a"), self.operator(config, "bench-b")
            started = min(a.started, b.started)
            w.add(a, started_inside=True)
            w.add(b, started_inside=True)
            holder = None
            deadline = time.monotonic() + 60
            while holder is None and time.monotonic() < deadline:
                holder = (self.api.json("GET", LEASE_PATH)[1] or {}).get("spec", {}).get("holderIdentity")
                time.sleep(0.1)
            leader, other = (a, b) if holder == a.identity else (b, a)
            # Mid-sync: when about a third of the objects exist (or at once if the sync is already done).
            self.checker.wait_for(lambda: self.checker is not None and (
                self.checker.owned() >= len(wanted) // 3 or not self.checker.bad), 60)  # fmt: skip
            fraction = self.checker.owned() / max(1, len(wanted))
            w.retire(leader)
            killed = time.monotonic()
            leader.stop(signal.SIGKILL)
            self.profiled("failover", other)
            done = self.converge(wanted, self.timeout(len(wanted)))
            other.stop_profile()
            w.close("failover", seconds=None if done is None else round(done - started, 2),
                    afterKill=None if done is None else round(done - killed, 2), converged=done is not None,
                    note=f"{holder} SIGKILLed at {fraction:.0%} of objects; lease {self.options.lease}")  # fmt: skip
        other.stop()

    def node_count(self, model_file: Path, model: dict[str, Any], source: str) -> None:
        """nodeCount on with a Node object for every node (created first, not measured), then 100 deleted."""
        assert self.checker is not None and self.api is not None
        from volcano_topology_emulated.model import FabricModel, node_manifests

        nodes = node_manifests(FabricModel.model_validate(model))
        took = baseline.create_nodes(self.api, nodes, self.options.concurrency)
        print(f"  created {len(nodes)} Node objects in {took:.1f}s (not measured)", flush=True)
        names = {n["metadata"]["name"] for n in nodes}
        wanted = fabrics.desired(model, source, nodes=names)
        write_model(model_file, model)
        config = write_config(self.root / "config-nodecount.yaml", [entry(source, model_file)], node_count=True,
                              concurrency=self.options.concurrency)  # fmt: skip
        self.checker.expect(wanted)
        with self.window() as w:
            op = self.operator(config, "bench-nodecount")
            w.add(op, started_inside=True)
            self.profiled("node-count", op)
            done = self.converge(wanted, 180)
            w.close("node-count", seconds=None if done is None else round(done - op.started, 2),
                    converged=done is not None, note=f"{len(nodes)} Nodes; HyperNodes there, no nodeCount")  # fmt: skip
        gone = sorted(names)[:: max(1, len(names) // 100)][:100]
        before = wanted
        wanted = fabrics.desired(model, source, nodes=names - set(gone))
        changed = sum(1 for name, w in wanted.items() if before[name].node_count != w.node_count)
        self.checker.expect(wanted)
        with self.window() as w:
            w.add(op)
            started = time.monotonic()
            baseline.delete_nodes(self.api, gone, self.options.concurrency)
            done = self.converge(wanted, 30)
            time.sleep(5)
            op.stop_profile()
            w.close("node-count-delete-100", seconds=None if done is None else round(max(0.0, done - started), 2),
                    converged=self.checker.wait(0.1) is not None, countsChanged=changed > 0,
                    note="exactMatch members count their names: deletions change no count")  # fmt: skip
        op.stop()

    # -- groups -----------------------------------------------------------------------------

    def fat_tree(self, nodes: int) -> None:
        chosen = self.options.scenarios
        source = "emulated"
        model = fabrics.fat_tree(nodes)
        wanted = fabrics.desired(model, source)
        self.labels = {"fabric": f"fat-tree-{nodes}", "nodes": nodes, "objects": len(wanted)}
        model_file = self.root / "model.yaml"
        if "baseline" in chosen:
            self.baseline(fabrics.manifests(model, source), wanted, {source})
        write_model(model_file, model)
        config = write_config(self.root / "config.yaml", [entry(source, model_file)],
                              concurrency=self.options.concurrency)  # fmt: skip
        if set(chosen) & {"cold", "steady", "restart", "move-node", "remove-leaf", "move-10pct"}:
            op = self.cold(config, wanted)
            if "steady" in chosen:
                self.steady(op, wanted)
            if "restart" in chosen:
                op = self.restart(op, config, wanted)
            current = model
            if "move-node" in chosen:
                for rep in range(self.options.move_reps):
                    current = fabrics.move_nodes(current, 1, offset=rep * 7)
                    self.change("move-node", op, model_file, current, source, rep)
            if "remove-leaf" in chosen:
                current = fabrics.remove_leaf(current, index=len(fabrics.leaves(current)) // 2)
                self.change("remove-leaf", op, model_file, current, source)
            if "move-10pct" in chosen:
                current = fabrics.move_nodes(current, nodes // 10, offset=1)
                self.change("move-10pct", op, model_file, current, source)
            op.stop()
        if "failover" in chosen:
            self.failover(model_file, model, source)
        if "node-count" in chosen and nodes == self.options.node_count_size:
            self.node_count(model_file, model, source)

    def four_providers(self, nodes: int = 4096) -> None:
        sources = [f"emulated-{x}" for x in "abcd"]
        models = {s: fabrics.fat_tree(nodes, node=f"{s[-1]}gpu", prefix=f"{s[-1]}-") for s in sources}
        wanted: dict[str, Wanted] = {}
        manifests = []
        for source, model in models.items():
            wanted |= fabrics.desired(model, source)
            manifests += fabrics.manifests(model, source)
        manifests.sort(key=lambda o: o["spec"]["tier"])
        self.labels = {"fabric": f"4x-fat-tree-{nodes}", "nodes": 4 * nodes, "objects": len(wanted)}
        if "baseline" in self.options.scenarios:
            self.baseline(manifests, wanted, set(sources))
        entries = []
        for source, model in models.items():
            write_model(self.root / f"model-{source}.yaml", model)
            entries.append(entry(source, self.root / f"model-{source}.yaml"))
        config = write_config(self.root / "config-four.yaml", entries, concurrency=self.options.concurrency)
        path = provider_dir(self.root / "providers", sources)
        op = self.cold(config, wanted, provider_path=path)
        self.steady(op, wanted)
        op.stop()

    def rails(self, nodes: int = 4096) -> None:
        source = "emulated"
        model = fabrics.rail_fabric(nodes)
        wanted = fabrics.desired(model, source)
        self.labels = {"fabric": f"rails-{nodes}", "nodes": nodes, "objects": len(wanted)}
        if "baseline" in self.options.scenarios:
            self.baseline(fabrics.manifests(model, source), wanted, {source})
        model_file = self.root / "model.yaml"
        write_model(model_file, model)
        config = write_config(self.root / "config.yaml", [entry(source, model_file)],
                              concurrency=self.options.concurrency)  # fmt: skip
        op = self.cold(config, wanted)
        self.steady(op, wanted)
        op = self.restart(op, config, wanted)
        op.stop()


def median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None
