"""Deterministic HyperNode names.

A name is lowercase, at most 63 characters (so it can be referenced as a member, which
Volcano's admission limits to a qualified name), and the same across runs whatever the
order of the input. A switch keeps its own (sanitised) name when that is usable and
unique; otherwise the name is derived from a hash of the path from the root, keeping a
readable stem where there is one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

MAX_NAME = 63
HASH_LENGTH = 10
_INVALID = re.compile(r"[^a-z0-9.-]+")
_DASHES = re.compile(r"-{2,}")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def sanitize(raw: str) -> str:
    """Lowercase; runs of other characters become one '-'; trimmed to start and end alphanumeric."""
    text = _DASHES.sub("-", _INVALID.sub("-", raw.lower()))
    return text.strip("-.")


def usable(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and bool(_LABEL.match(name)) and ".." not in name


def path_hash(path: Sequence[str]) -> str:
    digest = hashlib.sha256("\x1f".join(path).encode()).hexdigest()
    return digest[:HASH_LENGTH]


def hashed_name(path: Sequence[str], stem: str, prefix: str = "") -> str:
    """``<prefix><stem>-<hash of path>``, the stem cut to fit; ``<prefix>hn-<hash>`` without a stem."""
    suffix = "-" + path_hash(path)
    room = MAX_NAME - len(prefix) - len(suffix)
    stem = sanitize(stem)[: max(room, 0)].rstrip("-.")
    return f"{prefix}{stem or 'hn'}{suffix}"
