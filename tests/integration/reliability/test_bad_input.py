"""Bad input corpus (issue 13, item 5): garbage in is a documented error that says where, never a crash or a hang.

Property-based (hypothesis), each target fed random bytes, mutated real samples, deep nesting, huge numbers
and wrong types:

- the UFM answer path (``decode`` -> ``parse_fabric`` -> ``check_complete`` -> ``build_tree``), seeded with
  the shared real UFM samples and generated fabrics: only ``UFMDataError`` or ``TreeError``, and what is
  accepted is a strict tree of valid HyperNodes;
- the ibnetdiscover path (bytes -> ``parse`` -> ``layout`` -> build), seeded with the real 2 MB director
  dump and a generated one: only ``ParseError`` (naming a line of the text) or ``TreeError``;
- ``parse_configuration``: only ``ConfigError``, each problem naming its place; an accepted configuration
  can be fingerprinted (what the operator does with it) within the deadline, and no error quotes a value;
- ``check_document`` (the models): never raises, every problem has a path, a rule and a message;
- ``tree_problems`` / ``moment_problems`` against an independent oracle of the strict-tree rules, every
  problem naming a HyperNode of the set;
- the plan: tests/unit/test_plan_phases.py::test_every_write_of_a_random_transition_keeps_a_strict_tree
  already applies a plan write by write from any valid state to any valid state; it is re-run here (its own
  strategy and body, more examples at the full size) to count its examples.

Every example runs under a hard per-example deadline (SIGALRM): a hang fails the test instead of stalling
it. The figures count the inputs tried per target and the outcomes by class.
"""

from __future__ import annotations

import copy
import json
import math
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.integration.reliability.conftest import Figures, scaled
from volcano_topology.api import HyperNode, HyperNodeSpec, Member, MemberSelector, ObjectMeta, RegexMatch
from volcano_topology.config import ConfigError, parse_configuration
from volcano_topology.sdk.hostnames import NodeNameMapping
from volcano_topology.sdk.tree import TreeError
from volcano_topology.tree import levels, missing_member_problems, moment_problems, tree_problems
from volcano_topology.validation import check_document, describe

sys.path.insert(0, str(ROOT / "providers" / "ufm" / "tests"))  # ufm_testlib: UFM answers as UFM sends them
from ufm_testlib import fat_tree, fixture_answers, rail_optimised, to_ufm, two_tier
from volcano_topology_ibnetdiscover.build import layout
from volcano_topology_ibnetdiscover.parse import ParseError, parse
from volcano_topology_ibnetdiscover.synthetic import fat_tree as ib_fat_tree
from volcano_topology_ibnetdiscover.synthetic import render, render_blocks
from volcano_topology_ufm.build import build_tree
from volcano_topology_ufm.client import decode
from volcano_topology_ufm.parse import UFMDataError, check_complete, parse_fabric
from volcano_topology_ufm.settings import UFMSettings

DIRECTOR = ROOT / "tests" / "data" / "fixtures" / "ibnetdiscover" / "director.txt"  # a copy of ../shared/fixtures
DEADLINE = 30.0  # per example: a hang detector (the slowest takes ~3 s on a loaded machine), not a speed bound
EXAMPLES = scaled(300, 3000)
# Unloaded, the slowest target takes ~60 s at the full size; on a machine shared with a soak, many times that.
pytestmark = pytest.mark.timeout(scaled(300, 1200))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the hard deadline below interrupts a hang; hypothesis' own would only report after it
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# -- per-example deadline and the tally -----------------------------------------------------------------


class Hang(AssertionError):
    pass


@contextmanager
def hard_deadline(seconds: float, what: str) -> Iterator[None]:
    """Interrupt the example after ``seconds`` (SIGALRM), keeping any timer set before (pytest-timeout's)."""

    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"{what}: one example ran for more than {seconds:g}s (a hang)")

    previous = signal.signal(signal.SIGALRM, fire)
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001), interval)


@dataclass
class Tally:
    """Inputs tried against one target and what became of them."""

    target: str
    examples: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    checked: int = 0  # outputs and error messages verified
    slowest: float = 0.0

    def run(self, call: Callable[[], Any], allowed: tuple[type[BaseException], ...]) -> Any:
        """The call's result, or the documented error it raised; any other exception fails the example."""
        self.examples += 1
        started = time.monotonic()
        try:
            with hard_deadline(DEADLINE, self.target):
                result = call()
        except allowed as exc:
            self.outcomes[type(exc).__name__] += 1
            return exc
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)
        self.outcomes["accepted"] += 1
        return result

    def figures(self) -> dict[str, Any]:
        refused = sum(n for k, n in self.outcomes.items() if k != "accepted")
        return {
            "target": self.target, "trials": self.examples, "examples": self.examples, "faults_injected": refused,
            "objects_checked": self.checked, "lost": 0, "crashes": 0, "hangs": 0,
            "outcomes": dict(sorted(self.outcomes.items())), "slowest_example_ms": round(self.slowest * 1000, 1),
        }  # fmt: skip


def record(figures: Figures, *tallies: Tally) -> None:
    if len(tallies) == 1:
        figures.record(**tallies[0].figures())
        return
    parts = [t.figures() for t in tallies]
    outcomes: Counter[str] = Counter()
    for part in parts:
        outcomes.update(part["outcomes"])
    figures.record(
        trials=sum(p["trials"] for p in parts), faults_injected=sum(p["faults_injected"] for p in parts),
        objects_checked=sum(p["objects_checked"] for p in parts), lost=0, crashes=0, hangs=0,
        outcomes=dict(sorted(outcomes.items())), per_target={p["target"]: p["examples"] for p in parts},
        slowest_example_ms=max(p["slowest_example_ms"] for p in parts),
    )  # fmt: skip


# -- generic mutations ----------------------------------------------------------------------------------

HUGE = b"9" * 5000  # above Python's 4,300-digit limit for int(): int() raises ValueError on it
WEIRD_TEXT = [b"\x00", b"\xff\xfe", b"\r\n", b"\n\n", b"\t", b'"', b"'", b"#", b":", b"[", b"]", b"{", b"}",
              b"-", b"0x", b"NaN", b"Infinity", b"-1", b"1e999", b"\xe2\x80\xae", b"\\u0000", HUGE]  # fmt: skip


@st.composite
def mutated_bytes(
    draw: st.DrawFn,
    sample: bytes,
    *,
    nesting: tuple[bytes, bytes] = (b"[", b"]"),
    depths: tuple[int, ...] = (50, 1000, 100_000),
) -> bytes:
    """``sample`` with one to four mutations: flips, cuts, insertions, duplicated spans, huge numbers, nesting."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate", "weird", "number", "nest"]))
        if kind == "flip" and data:
            data[min(where, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[where : where + draw(st.integers(1, 200))]
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "duplicate":
            size = draw(st.integers(1, 400))
            data[where:where] = data[where : where + size]
        elif kind == "truncate":
            del data[where:]
        elif kind == "weird":
            data[where:where] = draw(st.sampled_from(WEIRD_TEXT))
        elif kind == "number":  # the next digit run made huge (or negative, or fractional)
            start = next((i for i in range(where, min(len(data), where + 2000)) if chr(data[i]).isdigit()), None)
            if start is not None:
                end = start
                while end < len(data) and chr(data[end]).isdigit():
                    end += 1
                data[start:end] = draw(
                    st.sampled_from([HUGE, b"-" + HUGE[:30], b"1.5e308", b"0", b"-1", b"4294967296"])
                )
        else:
            depth = draw(st.sampled_from(depths))
            data[where:where] = nesting[0] * depth + (nesting[1] * depth if draw(st.booleans()) else b"")
    return bytes(data)


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:30]):  # enough places to hit, without walking a whole fabric
            yield from _paths(item, (*prefix, index))


@st.composite
def mutated_structure(draw: st.DrawFn, sample: Any, weird: st.SearchStrategy[Any] = _json_value) -> Any:
    """A deep copy of ``sample`` with one to three values replaced by another type, or keys dropped or added."""
    data = copy.deepcopy(sample)
    for _ in range(draw(st.integers(1, 3))):
        places = list(_paths(data))
        path = draw(st.sampled_from(places))
        if not path:
            data = copy.deepcopy(draw(weird))  # a copy: a later mutation must not change the strategy's constants
            continue
        holder = data
        for step in path[:-1]:
            holder = holder[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "replace":
            holder[last] = copy.deepcopy(draw(weird))
        elif action == "drop":
            del holder[last]
        elif isinstance(holder, dict):
            holder[draw(st.text(max_size=10))] = copy.deepcopy(draw(weird))
        else:
            holder.insert(last, copy.deepcopy(draw(weird)))
    return data


# -- UFM answers -----------------------------------------------------------------------------------------

UFM_SETTINGS = UFMSettings(endpoint="ufm.example.com", allow_isolated_leaves=True)
UFM_SAMPLES = [
    fixture_answers(),  # real elements (refused as a whole: a host on a switch systems does not list)
    to_ufm(two_tier(leaves=3, spines=2, hosts=3)),
    to_ufm(fat_tree(pods=2, leaves=2, spines=2, cores=1, hosts=2)),
    to_ufm(rail_optimised(sus=1, rails=4, hosts=2)),
]
UFM_BODIES = [answers.bodies() for answers in UFM_SAMPLES]
RESOURCES = ("ports", "links", "systems")
UFM_WHAT = ("ports", "links", "systems", "switch", "host", "answer", "link", "leaf", "node")


def ufm_pipeline(bodies: dict[str, bytes]) -> list[HyperNode]:
    documents = {k: decode(bodies[k], f"resources/{k}") for k in RESOURCES}
    fabric = parse_fabric(documents["ports"], documents["links"], documents["systems"])
    check_complete(fabric)
    return build_tree(fabric, UFM_SETTINGS).tree.build()


@st.composite
def ufm_inputs(draw: st.DrawFn) -> dict[str, bytes]:
    base = draw(st.sampled_from(range(len(UFM_BODIES))))
    bodies = dict(UFM_BODIES[base])
    for resource in draw(st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=3, unique=True)):
        how = draw(st.sampled_from(["bytes", "random", "structure", "structure", "nesting", "wrapped"]))
        if how == "bytes":
            bodies[resource] = draw(mutated_bytes(bodies[resource]))
        elif how == "random":
            bodies[resource] = draw(st.binary(max_size=300))
        elif how == "structure":
            answer = getattr(UFM_SAMPLES[base], resource)
            bodies[resource] = json.dumps(draw(mutated_structure(answer))).encode()  # NaN/Infinity too
        elif how == "nesting":
            depth = draw(st.sampled_from([100, 5000, 200_000]))
            opener = draw(st.sampled_from([b"[", b'{"data":', b'[{"ports":']))
            bodies[resource] = opener * depth + b"1"
        else:  # the paginated form, with a total that may claim more
            answer = getattr(UFM_SAMPLES[base], resource)
            total = draw(st.sampled_from([len(answer), len(answer) + 1, -1, 10**30, "many", None]))
            bodies[resource] = json.dumps({"data": answer, "total": total}).encode()
    return bodies


def assert_strict_tree_of_valid_objects(hypernodes: list[HyperNode]) -> None:
    by_name = {h.name: h for h in hypernodes}
    assert len(by_name) == len(hypernodes), "two HyperNodes of one name"
    assert not tree_problems(by_name), [str(p) for p in tree_problems(by_name)]
    for hypernode in hypernodes:
        verdict = check_document(hypernode.to_dict())
        assert verdict.ok, [str(p) for p in verdict.problems]


def test_ufm_answers_fuzzed(figures: Figures) -> None:
    tally = Tally("ufm answers")

    @FUZZ
    @given(ufm_inputs())
    def example(bodies: dict[str, bytes]) -> None:
        result = tally.run(lambda: ufm_pipeline(bodies), (UFMDataError, TreeError))
        if isinstance(result, UFMDataError):
            assert any(word in str(result) for word in UFM_WHAT), f"an error that says neither where nor what: {result}"
        elif isinstance(result, TreeError):
            assert result.problems and all(result.problems)
        else:
            assert_strict_tree_of_valid_objects(result)
        tally.checked += 1

    example()
    record(figures, tally)
    assert tally.outcomes["accepted"] > 0 and tally.outcomes["UFMDataError"] > 0, tally.outcomes  # both sides reached


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" + HUGE + b"]", "not JSON"),  # int() refuses more than 4,300 digits: a ValueError before the fix
        (b'{"data": [], "total": ' + HUGE + b"}", "not JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["huge-number", "huge-total", "deep-nesting"],
)
def test_ufm_answer_extremes_are_data_errors(body: bytes, says: str) -> None:
    with pytest.raises(UFMDataError, match=says) as caught:
        decode(body, "resources/ports")
    assert "resources/ports" in str(caught.value)


# -- ibnetdiscover dumps ------------------------------------------------------------------------------

IB_SMALL = render(
    render_blocks(ib_fat_tree(pods=2, leaves_per_pod=2, spines_per_pod=2, cores=1, hosts_per_leaf=2, rails=2))
).encode()
IB_DIRECTOR = DIRECTOR.read_bytes()


def ib_pipeline(data: bytes) -> list[HyperNode]:
    fabric = parse(data.decode("utf-8", "replace"))  # as the provider reads it
    return layout(fabric, NodeNameMapping()).tree.build()


@st.composite
def line_mutations(draw: st.DrawFn, sample: bytes) -> bytes:
    """Whole lines deleted, duplicated, swapped or moved, and line ends changed: a spliced or reordered dump."""
    lines = sample.split(b"\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "move", "crlf", "blank"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(j, lines[i])
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "move":
            lines.insert(j, lines.pop(i))
        elif kind == "crlf":
            lines[i] = lines[i].rstrip(b"\r") if lines[i].endswith(b"\r") else lines[i] + b"\r"
        else:
            lines.insert(i, b"")
        if not lines:
            lines = [b""]
    return b"\n".join(lines)


def _ib_example(tally: Tally, data: bytes) -> None:
    result = tally.run(lambda: ib_pipeline(data), (ParseError, TreeError))
    if isinstance(result, ParseError):
        text_lines = data.decode("utf-8", "replace").count("\n") + 1
        assert str(result).startswith("line "), f"a parse error that names no line: {result}"
        assert all(1 <= line <= text_lines for line, _ in result.problems), result.problems
    elif isinstance(result, TreeError):
        assert result.problems and all(result.problems)
    else:
        assert_strict_tree_of_valid_objects(result)
    tally.checked += 1


def test_ibnetdiscover_dumps_fuzzed(figures: Figures) -> None:
    small, director = Tally("ibnetdiscover generated dump"), Tally("ibnetdiscover director.txt (real)")

    @FUZZ
    @given(
        st.one_of(
            mutated_bytes(IB_SMALL, nesting=(b"[", b"]")),
            line_mutations(IB_SMALL),
            st.binary(max_size=400),
            st.lists(st.sampled_from(IB_SMALL.split(b"\n")), max_size=40).map(b"\n".join),  # lines reshuffled
        )
    )
    def generated(data: bytes) -> None:
        _ib_example(small, data)

    # The real dump takes ~0.2 s an example: fewer of them.
    @settings(FUZZ, max_examples=scaled(30, 300))
    @given(st.one_of(mutated_bytes(IB_DIRECTOR), line_mutations(IB_DIRECTOR)))
    def real(data: bytes) -> None:
        _ib_example(director, data)

    generated()
    real()
    record(figures, small, director)
    assert small.outcomes["ParseError"] > 0 and director.outcomes["ParseError"] > 0


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (rb"Switch\s*(\d+)", b"Switch " + HUGE),
        (rb"\n\[(\d+)\]", b"\n[" + HUGE + b"]"),
        (rb'"\[(\d+)\]', b'"[' + HUGE + b"]"),
    ],
    ids=["node-port-count", "port-number", "peer-port-number"],
)
def test_ibnetdiscover_huge_numbers_are_parse_errors_naming_the_line(old: bytes, new: bytes) -> None:
    text = re.sub(old, new, IB_SMALL, count=1).decode()
    assert text != IB_SMALL.decode()
    with pytest.raises(ParseError) as caught:  # int() of 5,000 digits: a bare ValueError before the fix
        parse(text)
    line = next(i for i, t in enumerate(text.split("\n"), 1) if HUGE.decode() in t)
    assert caught.value.line == line and str(caught.value).startswith(f"line {line}: malformed")


# -- configuration ------------------------------------------------------------------------------------

SECRET = "fuzz-s3cr3t-Zq8"
CONFIG_SAMPLE = f"""
networkTopologyDiscovery:
  - source: ufm
    enabled: true
    interval: 10m
    credentials:
      secretRef: {{name: ufm-credentials, namespace: volcano-system}}
    config: {{endpoint: "https://ufm.example.com", password: {SECRET}}}
  - source: label
    interval: 1h30m
    config: {{nodeSelector: {{rack: a}}, tiers: [1, 2]}}
operator:
  concurrency: 8
  queueSize: 256
  requestTimeout: 4s
  retryDeadline: 60s
  deletionGuard: {{maxDeleteFraction: 0.5, allowEmpty: false}}
  status: {{conditions: true, nodeCount: false}}
  leaderElection:
    {{enabled: true, leaseName: volcano-topology, leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 2s}}
  removedProviders: keep
  dryRun: false
  admission: true
  volcano: {{namespace: volcano-system, configMap: volcano-controller-configmap, key: volcano-controller.conf}}
"""
CONFIG_DATA = yaml.safe_load(CONFIG_SAMPLE)
_KEY = r'\["(?:[^"\\]|\\.)*"\]'  # an odd key, JSON-quoted
_PLACE = rf"^(\(configuration\)|\w+|{_KEY})(\[\d+\]|\.[A-Za-z_][\w-]*|{_KEY})*: "
_yaml_weird = st.one_of(
    _json_value.filter(lambda v: not (isinstance(v, float) and math.isnan(v))),
    st.sampled_from([float("nan"), float("inf"), -1, 0, 2**63, "0s", "-5m", "1h-", "10 m", "", "keep", [], {}]),
)


def _config_text(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True).encode()


@st.composite
def alias_bombs(draw: st.DrawFn) -> bytes:
    """YAML anchors that expand exponentially (billion laughs), or a structure that contains itself."""
    if draw(st.booleans()):
        return b"networkTopologyDiscovery:\n  - &e {source: x, config: {self: *e}}\n"
    fan, depth = draw(st.integers(2, 10)), draw(st.integers(2, 9))
    lines = ["a0: &a0 [" + ", ".join(["lol"] * fan) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, depth)]
    lines += ["networkTopologyDiscovery:", "  - source: x", f"    config: {{bomb: *a{depth - 1}}}"]
    return ("\n".join(lines) + "\n").encode()


def config_pipeline(data: bytes) -> list[str]:
    configuration = parse_configuration(data.decode("utf-8", "replace"))
    return [entry.fingerprint() for entry in configuration.network_topology_discovery]  # what the operator does next


def test_configuration_fuzzed(figures: Figures) -> None:
    tally = Tally("configuration")

    @FUZZ
    @given(
        st.one_of(
            # PyYAML recurses: past ~1,000 levels it is refused; deeper only takes longer to refuse.
            mutated_bytes(CONFIG_SAMPLE.encode(), nesting=(b"[", b"]"), depths=(50, 2000)),
            mutated_bytes(CONFIG_SAMPLE.encode(), nesting=(b"{a: ", b"}"), depths=(50, 2000)),
            mutated_structure(CONFIG_DATA, _yaml_weird).map(_config_text),
            st.binary(max_size=300),
            st.text(max_size=200).map(str.encode),
            alias_bombs(),
        )
    )
    def example(data: bytes) -> None:
        result = tally.run(lambda: config_pipeline(data), (ConfigError,))
        if isinstance(result, ConfigError):
            assert result.problems
            for problem in result.problems:
                named = problem.startswith(("not valid YAML: ", "the configuration ")) or re.match(_PLACE, problem)
                assert named, f"a configuration problem that names no place: {problem!r}"
            # Values are never quoted. Keys are (they are the place): a secret typed where a key goes would show.
            messages = [problem.partition(": ")[2] for problem in result.problems]
            assert not any(SECRET in message for message in messages), "a configuration error quotes a value"
        tally.checked += 1

    example()
    record(figures, tally)
    assert tally.outcomes["accepted"] > 0 and tally.outcomes["ConfigError"] > 0, tally.outcomes


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("operator:\n  concurrency: " + "1" * 5000 + "\n", "not valid YAML"),  # int() of 5,000 digits in PyYAML
        ("networkTopologyDiscovery: " + "[" * 100_000 + "\n", "not valid YAML"),  # RecursionError in PyYAML
        ("networkTopologyDiscovery:\n  - {source: x, interval: .nan}\n", "networkTopologyDiscovery[0].interval"),
        ("networkTopologyDiscovery:\n  - {source: x, interval: .inf}\n", "networkTopologyDiscovery[0].interval"),
        ("operator: {requestTimeout: .nan}\n", "operator.requestTimeout"),
        ("networkTopologyDiscovery:\n  - &e {source: x, config: {self: *e}}\n", "expands to more than"),
        ('networkTopologyDiscovery:\n  - {source: x, "": 1}\n', 'networkTopologyDiscovery[0][""]: Extra inputs'),
    ],
    ids=[
        "huge-int",
        "deep-nesting",
        "nan-interval",
        "infinite-interval",
        "nan-timeout",
        "recursive-alias",
        "empty-key",
    ],
)
def test_configuration_extremes_are_config_errors(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse_configuration(text)


def test_an_alias_bomb_is_refused_before_anything_walks_it() -> None:
    """9 levels of 9 aliases: 387 million values from a 400-byte ConfigMap; fingerprinting it took minutes and GBs."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    text = "\n".join([*lines, "networkTopologyDiscovery:", "  - source: x", "    config: {bomb: *a8}", ""])
    with hard_deadline(DEADLINE, "alias bomb"), pytest.raises(ConfigError, match="values"):
        parse_configuration(text)


# -- the models -----------------------------------------------------------------------------------------

_DOCUMENTS = [
    {"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode",
     "metadata": {"name": "leaf-0", "labels": {"a.b/c": "d"}, "annotations": {"note": "x"}},
     "spec": {"tier": 1, "tierName": "leaf", "members": [
         {"type": "Node", "selector": {"exactMatch": {"name": "node-0"}}},
         {"type": "Node", "selector": {"regexMatch": {"pattern": "^gpu-"}}},
         {"type": "Node", "selector": {"labelMatch": {"matchLabels": {"rack": "a"},
                                       "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}}}]},
     "status": {"nodeCount": 3, "conditions": [{"type": "Synced", "status": "True", "reason": "Written",
                                                "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}},
    {"apiVersion": "topology.volcano.sh/v1alpha1", "kind": "HyperNode", "metadata": {"name": "spine-0"},
     "spec": {"tier": 2, "members": [{"type": "HyperNode", "selector": {"exactMatch": {"name": "leaf-0"}}}]}},
]  # fmt: skip
_model_weird = st.one_of(
    _json_value,
    st.sampled_from([2**63, 2**63 - 1, -1, "", "A" * 254, "UPPER", "a..b", "-a", "x" * 70, "Node", "HyperNode",
                     "2026-13-01T00:00:00Z", {"exactMatch": {"name": "a"}, "regexMatch": {"pattern": "b"}}, {}]),
)  # fmt: skip


def test_models_never_raise_and_every_problem_says_where_and_which_rule(figures: Figures) -> None:
    tally = Tally("models (check_document)")

    @FUZZ
    @given(st.one_of(st.sampled_from(_DOCUMENTS).flatmap(lambda d: mutated_structure(d, _model_weird)), _json_value))
    def example(document: Any) -> None:
        verdict = tally.run(lambda: check_document(document), ())
        assert describe(document).startswith("HyperNode ")
        for problem in verdict.problems:
            assert problem.path and problem.rule and problem.message, problem
            assert problem.level in ("schema", "admission", "topology")
        if verdict.ok:
            assert verdict.hypernode is not None
            again = HyperNode.model_validate(verdict.hypernode.to_dict())
            assert again.to_dict() == verdict.hypernode.to_dict()
        tally.outcomes["with problems" if verdict.problems else "valid"] += 1
        tally.checked += 1

    example()
    tally.outcomes.pop("accepted", None)
    record(figures, tally)
    assert tally.outcomes["valid"] > 0 and tally.outcomes["with problems"] > 0, tally.outcomes


# -- the tree checks against an independent oracle ----------------------------------------------------

NAMES = [f"h{i}" for i in range(7)]
NODES = [f"n{i}" for i in range(6)]


@st.composite
def hypernode_sets(draw: st.DrawFn) -> dict[str, HyperNode]:
    found: dict[str, HyperNode] = {}
    for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True)):
        members = []
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["node", "node", "hypernode", "hypernode", "regex"]))
            if kind == "node":
                members.append(Member.node(draw(st.sampled_from(NODES))))
            elif kind == "hypernode":
                members.append(Member.hypernode(draw(st.sampled_from(NAMES))))
            else:
                selector = MemberSelector(regex_match=RegexMatch(pattern="^n"))
                members.append(Member(type=draw(st.sampled_from(["Node", "HyperNode"])), selector=selector))
        spec = HyperNodeSpec(tier=draw(st.integers(0, 4)), members=members)
        found[name] = HyperNode(metadata=ObjectMeta(name=name), spec=spec)
    return found


def oracle(hypernodes: dict[str, HyperNode], *, moment: bool, existing: frozenset[str] = frozenset()) -> list[str]:
    """The strict-tree rules, written out plainly (tree.py's docstring); empty when they all hold."""
    broken = []
    node_homes: Counter[str] = Counter()
    parents: Counter[str] = Counter()
    node_tiers = set()
    for name, hypernode in hypernodes.items():
        assert hypernode.spec is not None
        for member in hypernode.members:
            assert member.selector is not None
            exact = member.selector.exact_match
            if exact is None:
                if member.type == "HyperNode" and not moment:
                    broken.append(f"{name}: HyperNode member not by exactMatch")
                continue
            if member.type == "Node":
                node_homes[exact.name] += 1
                node_tiers.add(hypernode.spec.tier)
                continue
            parents[exact.name] += 1
            child = hypernodes.get(exact.name)
            if child is None:
                if moment and exact.name not in existing:
                    broken.append(f"{name}: member {exact.name} missing")
            elif child.spec is not None and hypernode.spec.tier <= child.spec.tier:
                broken.append(f"{name}: not above {exact.name}")  # every cycle breaks this one too
    broken += [f"node {n} in {k} places" for n, k in node_homes.items() if k > 1]
    broken += [f"{c} has {k} parents" for c, k in parents.items() if k > 1]
    if not moment and len(node_tiers) > 1:
        broken.append(f"nodes at tiers {sorted(node_tiers)}")
    return broken


def test_tree_checks_agree_with_an_oracle_and_name_the_object(figures: Figures) -> None:
    tally = Tally("tree checks")
    rules = {"exactMatch for HyperNode members", "parent tier above children", "one parent", "no cycles",
             "node in one leaf", "nodes at the lowest tier", "member exists"}  # fmt: skip

    @FUZZ
    @given(hypernode_sets(), st.frozensets(st.sampled_from(NAMES), max_size=3))
    def example(hypernodes: dict[str, HyperNode], existing: frozenset[str]) -> None:
        found = tally.run(lambda: tree_problems(hypernodes), ())
        assert bool(found) == bool(oracle(hypernodes, moment=False)), (found, oracle(hypernodes, moment=False))
        missing = missing_member_problems(hypernodes, existing)
        for problem in [*found, *missing]:
            assert problem.name in hypernodes and problem.rule in rules and problem.path, problem
            assert str(problem).startswith(f"HyperNode {problem.name}: ")
        at_a_moment = moment_problems(hypernodes, existing=existing)
        assert bool(at_a_moment) == bool(oracle(hypernodes, moment=True, existing=existing)), at_a_moment
        assert all(any(name in text for name in hypernodes) or text.startswith("node ") for text in at_a_moment)
        assert set(levels(hypernodes)) == set(hypernodes)  # cycles are cut, not followed
        tally.outcomes.pop("accepted")
        tally.outcomes["strict tree" if not found else "refused"] += 1
        tally.checked += 1 + len(found) + len(missing) + len(at_a_moment)

    example()
    record(figures, tally)
    assert tally.outcomes["strict tree"] > 0 and tally.outcomes["refused"] > 0, tally.outcomes


# -- the plan: already a property of its own; counted here ------------------------------------------


def test_plan_from_any_valid_state_to_any_other_keeps_a_strict_tree_at_every_write(figures: Figures) -> None:
    """tests/unit/test_plan_phases.py runs this property with 300 examples in the unit suite; here its own
    strategy and body run again (more at the full size), counting examples and writes checked."""
    from tests.unit import test_plan_phases as phases

    body = phases.test_every_write_of_a_random_transition_keeps_a_strict_tree.hypothesis.inner_test  # type: ignore[attr-defined]
    tally = Tally("plan (test_plan_phases property)")
    writes = Counter[str]()
    original_apply = phases.apply

    def counting_apply(state: dict[str, HyperNode], op: Any) -> None:
        writes["writes"] += 1
        original_apply(state, op)

    @settings(FUZZ, max_examples=scaled(100, 2000))
    @given(phases.transitions(), st.data())
    def example(transition: tuple[list[HyperNode], list[HyperNode]], data: st.DataObject) -> None:
        tally.run(lambda: body(transition, data), ())
        tally.checked += 1

    phases.apply = counting_apply  # execute() checks moment_problems after each of these
    try:
        example()
    finally:
        phases.apply = original_apply
    record(figures, tally)
    figures.record(covered_by="tests/unit/test_plan_phases.py::test_every_write_of_a_random_transition_keeps_a_strict_tree",
                   unit_suite_examples=300, writes_checked=writes["writes"])  # fmt: skip
    assert writes["writes"] > tally.examples


def test_the_samples_are_what_the_fuzzers_start_from() -> None:
    """The seeds themselves: the generated answers and dumps build trees; the real UFM sample is refused whole."""
    for bodies in UFM_BODIES[1:]:
        assert_strict_tree_of_valid_objects(ufm_pipeline(bodies))
    with pytest.raises(UFMDataError, match="partial answer"):
        ufm_pipeline(UFM_BODIES[0])
    assert_strict_tree_of_valid_objects(ib_pipeline(IB_SMALL))
    assert_strict_tree_of_valid_objects(ib_pipeline(IB_DIRECTOR))
    assert len(config_pipeline(CONFIG_SAMPLE.encode())) == 2
