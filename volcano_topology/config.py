"""Operator configuration: Volcano's ``networkTopologyDiscovery`` list plus operator settings.

The same YAML a Volcano user already has in ``volcano-controller-configmap`` works::

    networkTopologyDiscovery:
      - source: ufm
        enabled: true
        interval: 10m
        credentials:
          secretRef: {name: ufm-credentials, namespace: volcano-system}
        config: {endpoint: "https://ufm.example.com"}
    operator:                     # ours; every key optional
      concurrency: 8
      deletionGuard: {maxDeleteFraction: 0.5, allowEmpty: false}
      status: {conditions: true, nodeCount: false}
      requestTimeout: 4s          # each HyperNode request, in total; renewDeadline + this < leaseDuration
      leaderElection: {enabled: true, leaseName: volcano-topology, leaseDuration: 15s, renewDeadline: 10s}
      removedProviders: keep      # or delete: what happens to a provider's objects when it leaves the list

Other top-level keys (Volcano's controller shares the ConfigMap) are ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go duration (``90s``, ``10m``, ``1h30m``, ``500ms``)."""
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range (about 1.8e308)
            raise ValueError("a duration too large to be one") from None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if "".join(n + u for n, u in parts) != text:
            raise ValueError("not a duration like 30s, 10m or 1h30m")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError("not a duration like 30s, 10m or 1h30m")
    if not math.isfinite(seconds):  # YAML's .nan and .inf: a timer that never fires, or fires at once
        raise ValueError("a duration must be a finite number")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", frozen=True
    )


class SecretRef(_Config):
    name: str = Field(min_length=1)
    namespace: str | None = None


class Credentials(_Config):
    secret_ref: SecretRef | None = None


class DiscoveryEntry(_Config):
    source: str = Field(min_length=1)
    enabled: bool = True
    interval: Duration | None = None
    credentials: Credentials | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    def fingerprint(self, secret_digest: str = "") -> str:
        """Changes when anything that should restart the provider changes (including its Secret's data)."""
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True) + secret_digest
        return hashlib.sha256(body.encode()).hexdigest()


class DeletionGuardSettings(_Config):
    max_delete_fraction: float = Field(0.5, ge=0, le=1)
    allow_empty: bool = False


class StatusSettings(_Config):
    conditions: bool = True
    node_count: bool = False  # Volcano's own controller also writes nodeCount: enable only where it does not


class LeaderElectionSettings(_Config):
    enabled: bool = True
    lease_name: str = "volcano-topology"
    namespace: str | None = None  # default: the pod's namespace, else "default"
    lease_duration: Duration = 15.0
    renew_deadline: Duration = 10.0
    retry_period: Duration = 2.0

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElectionSettings:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            values = f"{self.retry_period:g}s, {self.renew_deadline:g}s, {self.lease_duration:g}s"
            raise ValueError(f"leader election needs retryPeriod < renewDeadline < leaseDuration (now {values})")
        return self


class VolcanoSettings(_Config):
    """Where Volcano's own controller reads its discovery configuration, and what it can run itself."""

    namespace: str = "volcano-system"
    config_map: str = "volcano-controller-configmap"
    key: str = "volcano-controller.conf"
    # Volcano's controller runs these itself for every enabled entry of its ConfigMap.
    builtin_sources: list[str] = Field(default_factory=lambda: ["label", "ufm"])


class OperatorSettings(_Config):
    concurrency: int = Field(8, ge=1, le=256)
    queue_size: int = Field(256, ge=1)
    # Total bound of each HyperNode request; with leader election it must fit in leaseDuration - renewDeadline.
    request_timeout: Duration = 4.0
    retry_deadline: Duration = 60.0
    deletion_guard: DeletionGuardSettings = Field(default_factory=DeletionGuardSettings)
    status: StatusSettings = Field(default_factory=StatusSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    removed_providers: Literal["keep", "delete"] = "keep"
    provider_paths: list[str] = Field(default_factory=list)
    dry_run: bool = False
    admission: bool = True  # hold objects to Volcano's admission rules too
    volcano: VolcanoSettings = Field(default_factory=VolcanoSettings)

    @model_validator(mode="after")
    def _writes_end_before_the_lease(self) -> OperatorSettings:
        # The leader's write gate closes at renewDeadline; a write sent just before must be answered
        # or abandoned (requestTimeout) before the lease may expire for another replica.
        election = self.leader_election
        if election.enabled and not election.renew_deadline + self.request_timeout < election.lease_duration:
            raise ValueError(
                f"leaderElection.renewDeadline ({election.renew_deadline:g}s) + requestTimeout "
                f"({self.request_timeout:g}s) must be less than leaderElection.leaseDuration "
                f"({election.lease_duration:g}s): a write sent just before the renew deadline could still be "
                "in flight when another replica takes over"
            )
        return self


class Configuration(_Config):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="ignore", frozen=True
    )

    network_topology_discovery: list[DiscoveryEntry] = Field(default_factory=list)
    operator: OperatorSettings = Field(default_factory=OperatorSettings)

    @model_validator(mode="after")
    def _unique_sources(self) -> Configuration:
        seen: set[str] = set()
        for entry in self.network_topology_discovery:
            if entry.source in seen:
                raise ValueError(f"source {entry.source!r} is listed twice in networkTopologyDiscovery")
            seen.add(entry.source)
        return self

    def enabled(self) -> dict[str, DiscoveryEntry]:
        return {e.source: e for e in self.network_topology_discovery if e.enabled}


# YAML aliases share one value among many places: a few hundred bytes of anchors can stand for billions of
# values (or a value that contains itself), which whatever walks the configuration (validation, the
# fingerprint) would expand. A real configuration has thousands at most.
MAX_VALUES = 1_000_000


# Brackets nested deeper than this are refused before YAML sees them: PyYAML's scanner takes seconds over
# thousands of ``[`` (quadratic in the depth) before its recursion fails. A real configuration nests a few.
MAX_FLOW_DEPTH = 100


def _flow_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` (quotes not parsed: a string full of brackets counts too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}" and depth:
            depth -= 1
    return deepest


def parse_configuration(text: str) -> Configuration:
    """Parse and validate; every problem names its place (``networkTopologyDiscovery[1].interval``)."""
    if ("[" in text or "{" in text) and _flow_depth(text) > MAX_FLOW_DEPTH:
        raise ConfigError([f"not valid YAML: brackets nested more than {MAX_FLOW_DEPTH} deep"])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {yaml_problem(exc)}"]) from exc
    except RecursionError:
        raise ConfigError(["not valid YAML: nested too deeply"]) from None
    except ValueError:  # a constructor's: int() of more than 4,300 digits, a date that does not exist
        raise ConfigError(
            ["not valid YAML: a value that cannot be converted (a number too long, or a bad date)"]
        ) from None
    if _too_many_values(data):
        raise ConfigError(
            [f"the configuration expands to more than {MAX_VALUES:,} values (YAML aliases that repeat or contain "
             "themselves?)"]
        )  # fmt: skip
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["the configuration must be a mapping with networkTopologyDiscovery"])
    try:
        return Configuration.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_place(e["loc"]) + ": " + e["msg"] for e in exc.errors()]) from exc


def _too_many_values(data: Any) -> bool:
    """Whether ``data``, with every alias expanded, holds more than ``MAX_VALUES`` values (bounded work)."""
    pending, seen = [data], 1
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        seen += len(children)
        if seen > MAX_VALUES:  # counted before being pushed: the work and the stack stay below the bound
            return True
        pending.extend(children)
    return False


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, without quoting the text: the offending line may hold a credential."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f"{exc.context}, " if exc.context else ""
        return f"{context}{exc.problem or 'syntax error'}{where}"
    return type(exc).__name__


_PLAIN_KEY = re.compile(r"[A-Za-z_][\w-]*")


def _place(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):  # an empty key, or one with dots, spaces, quotes: shown quoted
            out += f"[{json.dumps(part)}]"
        else:
            out += f".{part}" if out else part
    return out or "(configuration)"
