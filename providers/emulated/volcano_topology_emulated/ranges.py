"""Name ranges: ``gpu[001-128]``, ``rack[1,3,5-7]-n[01-04]`` (ranges multiply)."""

from __future__ import annotations

import itertools
import re

_BRACKET = re.compile(r"\[([^\]]*)\]")
MAX_EXPANSION = 1_000_000


class RangeError(ValueError):
    """A name range that cannot be expanded; the message names the pattern."""


def expand(pattern: str) -> list[str]:
    parts = _BRACKET.split(pattern)
    # split() alternates literal text and bracket contents
    choices: list[list[str]] = []
    for index, part in enumerate(parts):
        choices.append(_items(part, pattern) if index % 2 else [part])
    total = 1
    for options in choices:
        total *= len(options)
    if total > MAX_EXPANSION:
        raise RangeError(f"{pattern!r} expands to {total} names, more than {MAX_EXPANSION}")
    return ["".join(combo) for combo in itertools.product(*choices)]


def _items(body: str, pattern: str) -> list[str]:
    out: list[str] = []
    for item in body.split(","):
        item = item.strip()
        if re.fullmatch(r"\d+", item):
            out.append(item)
            continue
        match = re.fullmatch(r"(\d+)-(\d+)", item)
        if not match:
            raise RangeError(f"{pattern!r}: {item!r} is not a number or a range like 001-128")
        first, last = match.groups()
        if int(first) > int(last):
            raise RangeError(f"{pattern!r}: range {item} runs backwards")
        width = len(first) if first.startswith("0") else 0
        out.extend(str(n).zfill(width) for n in range(int(first), int(last) + 1))
    return out
