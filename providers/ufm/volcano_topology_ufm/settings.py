"""The provider's ``config`` block: compatible with Volcano's ufm source, plus what production needs.

Volcano's own keys (``endpoint``, ``insecureSkipVerify``) mean the same here; everything
else is optional. Credentials are not configuration: they come from the Secret named by
``credentials.secretRef`` (or, for offline runs, a directory laid out like a mounted Secret).
"""

from __future__ import annotations

import ssl
import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from volcano_topology.config import Duration
from volcano_topology.sdk import naming
from volcano_topology.sdk.hostnames import NodeNameMapping

PEM_MARKER = "-----BEGIN"
MAX_SCAN_TIMEOUT = 280.0
DEFAULT_MAX_RESPONSE_BYTES = 100 << 20  # Volcano's ufm source reads at most 100 MiB too
_REST_PREFIXES = ("ufmrest", "ufmrestv2", "ufmrestv3")


class UFMSettings(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", frozen=True
    )

    # -- where and how to connect ----------------------------------------------------
    endpoint: str = Field(min_length=1)
    insecure_skip_verify: bool = False
    ca_bundle: str | None = None  # a PEM file's path, or the PEM text itself
    authentication: Literal["auto", "basic", "token"] = "auto"
    api_prefix: str | None = None  # default: /ufmRest (basic), /ufmRestV3 (token)
    credentials_dir: str | None = None  # files username/password/token, as a mounted Secret; for offline runs
    connect_timeout: Duration = 10.0
    timeout: Duration = 30.0  # total per request, connect and body included
    scan_timeout: Duration = 240.0  # all requests of one scan, retries and their waits included
    retries: int = Field(3, ge=0, le=10)
    retry_backoff: Duration = 1.0
    retry_backoff_max: Duration = 10.0
    max_response_bytes: int = Field(DEFAULT_MAX_RESPONSE_BYTES, ge=1024)

    # -- what to build ------------------------------------------------------------------
    node_names: NodeNameMapping = Field(default_factory=NodeNameMapping)
    name_prefix: str = ""
    tier_names: dict[int, str] = Field(default_factory=lambda: {1: "leaf", 2: "spine", 3: "core"})
    non_leaf_switches: list[str] = Field(default_factory=list)  # regexes (fullmatch) of switch names

    # -- refusing broken answers --------------------------------------------------------
    max_host_drop_fraction: float = Field(0.3, ge=0.0, le=1.0)
    allow_isolated_leaves: bool = False

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        # Messages never quote the value: an endpoint with user:password@ would end up in logs.
        text = value.strip()
        url = urllib.parse.urlsplit(text if "://" in text else f"https://{text}")
        if url.scheme not in ("http", "https"):
            raise ValueError("endpoint must be host[:port] or an http(s):// URL")
        if url.username is not None or url.password is not None:
            raise ValueError("endpoint must not carry credentials: put them in the Secret of credentials.secretRef")
        if not url.hostname:
            raise ValueError("endpoint has no host")
        if url.query or url.fragment:
            raise ValueError("endpoint must not have a query or fragment")
        if url.path.rstrip("/").rsplit("/", 1)[-1].lower() in _REST_PREFIXES:
            # Volcano's endpoint is the server: the prefix would be asked for twice (/ufmRest/ufmRest/...).
            raise ValueError(
                "endpoint must not end in the REST prefix (/ufmRest, /ufmRestV2, /ufmRestV3): give the server only, "
                "the prefix follows from the credentials (or set apiPrefix)"
            )
        try:
            url.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError("endpoint has an invalid port") from exc
        return text

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if PEM_MARKER not in value and not Path(value).is_file():
            raise ValueError("caBundle must be PEM text or the path of a readable PEM file")
        try:  # what the client will load at its first connection: refuse it now, by name, rather than at each scan
            if PEM_MARKER in value:
                ssl.create_default_context(cadata=value)
            else:
                ssl.create_default_context(cafile=value)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"caBundle holds no usable PEM certificate: {exc}") from None
        return value

    @field_validator("api_prefix")
    @classmethod
    def _api_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = "/" + value.strip().strip("/")
        if cleaned == "/" or any(c in cleaned for c in "?#"):
            raise ValueError("apiPrefix must be a path such as /ufmRest or /ufmRestV3")
        return cleaned

    @field_validator("name_prefix")
    @classmethod
    def _name_prefix(cls, value: str) -> str:
        if value and (naming.sanitize(value) != value.rstrip("-") or len(value) > 20):
            raise ValueError("namePrefix must be at most 20 lowercase letters, digits, '-' or '.', e.g. 'ufm-'")
        return value

    @field_validator("tier_names")
    @classmethod
    def _tier_names(cls, value: dict[int, str]) -> dict[int, str]:
        if any(tier < 1 for tier in value):
            raise ValueError("tierNames keys are tiers, 1 (leaf) and up")
        return value

    @field_validator("non_leaf_switches")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        import re

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"nonLeafSwitches: not a valid regular expression {pattern!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> UFMSettings:
        if self.insecure_skip_verify and self.ca_bundle:
            raise ValueError("caBundle and insecureSkipVerify exclude each other: a CA bundle is for verifying")
        if self.retry_backoff > self.retry_backoff_max:
            raise ValueError("retryBackoff must not be above retryBackoffMax")
        if self.scan_timeout > MAX_SCAN_TIMEOUT:
            # ScanningProvider abandons a scan after 300 s; finish (or fail) well before that.
            raise ValueError(f"scanTimeout must be at most {MAX_SCAN_TIMEOUT:g}s")
        if self.timeout > self.scan_timeout:
            raise ValueError("timeout (per request) must not be above scanTimeout (the whole scan)")
        return self

    # -- derived ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``scheme://host[:port][/path]`` without a trailing slash; https when the endpoint has no scheme."""
        text = self.endpoint.strip()
        return (text if "://" in text else f"https://{text}").rstrip("/")
