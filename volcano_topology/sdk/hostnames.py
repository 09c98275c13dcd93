"""Fabric host names to Kubernetes node names.

Fabric managers name hosts their own way (``SAT111092710053``, ``luna-0001.cluster``);
Kubernetes nodes are named by the kubelet. Providers put every host name through one
:class:`NodeNameMapping` (the ``nodeNames`` block of their configuration)::

    nodeNames:
      case: lower                        # or preserve; applied first
      regex: '(?P<host>[a-z0-9-]+)\\.cluster'   # fullmatch; a host that does not match is unmapped
      template: '{host}'                 # {host} and the regex's named groups
      exclude: ['ufm-.*']                # hosts left out silently (management servers, ...)

A host is *unmapped*, with a reason, when the regex does not match, when the result is
not a valid node name, or when several hosts map to the same node name (then all of
them are, since a node belongs to one host). :meth:`NodeNameMapper.map_all` gives the
same answer whatever the order of its input.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from volcano_topology import kubenames


class NodeNameMapping(BaseModel):
    """How a provider turns fabric host names into node names (see the module docstring)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid", frozen=True)

    case: Literal["lower", "preserve"] = "lower"
    regex: str | None = None
    template: str = "{host}"
    exclude: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @field_validator("exclude")
    @classmethod
    def _excludes_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _compile(pattern)
        return value

    @model_validator(mode="after")
    def _template_fields_exist(self) -> NodeNameMapping:
        groups = set(re.compile(self.regex).groupindex) if self.regex else set()
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"template {self.template!r}: {exc}") from exc
        unknown = sorted(fields - groups - {"host"})
        if unknown:
            known = ", ".join(sorted({"host", *groups}))
            raise ValueError(f"template {self.template!r} uses {{{unknown[0]}}}, which is not one of: {known}")
        return self

    def mapper(self) -> NodeNameMapper:
        return NodeNameMapper(self)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression {pattern!r}: {exc}") from exc


@dataclass
class MappedHosts:
    nodes: dict[str, str] = field(default_factory=dict)  # host as given -> node name
    unmapped: dict[str, str] = field(default_factory=dict)  # host as given -> why
    excluded: set[str] = field(default_factory=set)


class NodeNameMapper:
    def __init__(self, mapping: NodeNameMapping) -> None:
        self.mapping = mapping
        self._regex = re.compile(mapping.regex) if mapping.regex else None
        self._exclude = [re.compile(p) for p in mapping.exclude]

    def excluded(self, host: str) -> bool:
        folded = self._fold(host)
        return any(p.fullmatch(folded) for p in self._exclude)

    def map(self, host: str) -> str | None:
        """The node name of ``host``, or None when it is excluded or unmapped (see :meth:`explain`)."""
        name, _ = self.explain(host)
        return name

    def explain(self, host: str) -> tuple[str | None, str | None]:
        """``(node name, None)``, or ``(None, why)`` for an unmapped host, or ``(None, None)`` for an excluded one."""
        folded = self._fold(host)
        if any(p.fullmatch(folded) for p in self._exclude):
            return None, None
        groups: dict[str, str] = {}
        if self._regex is not None:
            match = self._regex.fullmatch(folded)
            if match is None:
                return None, f"does not match nodeNames.regex {self.mapping.regex!r}"
            groups = {k: v or "" for k, v in match.groupdict().items()}
        name = self.mapping.template.format(**{"host": folded, **groups})
        problems = kubenames.dns1123_subdomain_problems(name) or kubenames.qualified_name_problems(name)
        if problems:
            return None, f"maps to {name!r}, which is not a valid node name: {problems[0]}"
        return name, None

    def map_all(self, hosts: Iterable[str]) -> MappedHosts:
        result = MappedHosts()
        claimed: dict[str, list[str]] = defaultdict(list)
        for host in sorted(set(hosts)):
            name, why = self.explain(host)
            if name is not None:
                claimed[name].append(host)
            elif why is not None:
                result.unmapped[host] = why
            else:
                result.excluded.add(host)
        for name, owners in claimed.items():
            if len(owners) == 1:
                result.nodes[owners[0]] = name
            else:
                for host in owners:
                    others = ", ".join(o for o in owners if o != host)
                    result.unmapped[host] = f"maps to {name!r}, as {others} {'does' if len(owners) == 2 else 'do'}"
        return result

    def _fold(self, host: str) -> str:
        return host.lower() if self.mapping.case == "lower" else host
