"""The provider's ``config`` block: where the dump comes from, and how its hosts and HyperNodes are named."""

from __future__ import annotations

import re
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from volcano_topology.sdk.hostnames import NodeNameMapping
from volcano_topology_ibnetdiscover.build import DEFAULT_IGNORED, DEFAULT_TIER_NAMES, DEFAULT_UNNAMED, BuildOptions

_PREFIX = re.compile(r"[a-z0-9]([a-z0-9]|-(?!-))*")


class IBNetDiscoverSettings(BaseModel):
    """Exactly one of ``file``, ``command`` or ``url``; everything else has a default."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", frozen=True
    )

    file: str | None = Field(None, min_length=1, description="path of a saved dump, read at every scan")
    command: list[str] | None = Field(
        None, min_length=1, description="argv run at every scan (no shell), e.g. [ibnetdiscover]; stdout is the dump"
    )
    url: str | None = Field(None, description="http(s) URL serving a dump, fetched at every scan")
    timeout: float = Field(120.0, gt=0, le=240, description="seconds a command or a fetch may take")
    accept_incomplete_discovery: bool = Field(
        False, description="take a command's dump even when it reported failed SMPs on stderr (exit status 0)"
    )
    max_bytes: int = Field(64 << 20, ge=1024, le=1 << 30, description="a larger dump is refused")
    insecure_skip_tls_verify: bool = Field(False, description="fetch https without checking the certificate")
    ca_file: str | None = Field(None, min_length=1, description="PEM bundle to verify the server with")
    node_names: NodeNameMapping = Field(default_factory=NodeNameMapping)
    name_prefix: str = Field("", max_length=20, description="put before every HyperNode name, e.g. 'ib-'")
    tier_names: dict[int, str] = Field(default_factory=lambda: dict(DEFAULT_TIER_NAMES))
    unnamed_descriptions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_UNNAMED),
        description="regexes (fullmatch) of node descriptions that name nothing (firmware defaults)",
    )
    ignored_descriptions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IGNORED),
        description="regexes (fullmatch) of HCA descriptions that are no hosts (SHARP aggregation nodes)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [name for name in ("file", "command", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of file, command or url (got {', '.join(given) or 'none'})")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Messages never quote the value: a URL with user:password@ would end up in logs and Events.
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("url: expected http(s)://host/...")
            if parts.username is not None or parts.password is not None:
                # Every failed fetch names its URL (in the log, at each scan): credentials in it would be shown.
                raise ValueError("url must not carry credentials: put them in the Secret of credentials.secretRef")
        return value

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not _PREFIX.fullmatch(value):
            raise ValueError(f"namePrefix {value!r}: lowercase letters, digits and single '-', starting alphanumeric")
        return value

    @field_validator("unnamed_descriptions", "ignored_descriptions")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression {pattern!r}: {exc}") from exc
        return value

    @field_validator("tier_names")
    @classmethod
    def _tiers(cls, value: dict[int, str]) -> dict[int, str]:
        for tier, name in value.items():
            if tier < 1 or not name:
                raise ValueError(f"tierNames: tier {tier} -> {name!r}: tiers start at 1 and names are not empty")
        return value

    def options(self) -> BuildOptions:
        return BuildOptions(
            self.name_prefix, dict(self.tier_names), tuple(self.unnamed_descriptions), tuple(self.ignored_descriptions)
        )
