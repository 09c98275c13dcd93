"""Slurm hostlist expressions: ``gpu[01-08,12],cpu3`` <-> names. Pure.

Only a trailing number is bracketed (``rack1-gpu07`` -> ``rack1-gpu[07]``'s prefix is
``rack1-gpu``). Zero padding follows Slurm's rule: a range is padded to the width of
its lower bound, so ``gpu[08-10]`` is ``gpu08 gpu09 gpu10`` and ``gpu[8-10]`` is
``gpu8 gpu9 gpu10``. ``compress`` never merges names whose expansion would differ.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")
_BRACKET = re.compile(r"^([^\[\]]*)\[([^\[\]]+)\]([^\[\]]*)$")


class HostlistError(ValueError):
    """A hostlist expression Slurm would not parse."""


def compress(names: Iterable[str]) -> str:
    """One hostlist expression naming exactly ``names`` (sorted, duplicates dropped)."""
    unique = sorted(set(names))
    plain: list[str] = []
    # (prefix, width): width 0 is "natural" (no zero padding), otherwise every number is printed at that width
    groups: dict[tuple[str, int], set[int]] = defaultdict(set)
    padded_widths: dict[str, set[int]] = defaultdict(set)
    numbered: list[tuple[str, str]] = []
    for name in unique:
        match = _TRAILING_NUMBER.match(name)
        if match is None or "[" in name or "]" in name or "," in name:
            plain.append(name)
            continue
        prefix, digits = match.groups()
        numbered.append((prefix, digits))
        if len(digits) > 1 and digits.startswith("0"):
            padded_widths[prefix].add(len(digits))
    for prefix, digits in numbered:
        padded = len(digits) > 1 and digits.startswith("0")
        # A number without leading zeros but of a padded group's width (the 10 in 01..16) prints the same there.
        width = len(digits) if padded or len(digits) in padded_widths[prefix] else 0
        groups[(prefix, width)].add(int(digits))
    parts = list(plain)
    for (prefix, width), numbers in sorted(groups.items()):
        ranges = _runs(sorted(numbers))
        if len(numbers) == 1:
            parts.append(f"{prefix}{_fmt(ranges[0][0], width)}")
            continue
        inner = ",".join(
            _fmt(low, width) if low == high else f"{_fmt(low, width)}-{_fmt(high, width)}" for low, high in ranges
        )
        parts.append(f"{prefix}[{inner}]")
    return ",".join(sorted(parts, key=_natural))


def expand(expression: str) -> list[str]:
    """The names of a hostlist expression, in order (what Slurm's parser yields)."""
    names: list[str] = []
    for part in _split_top(expression):
        if "[" not in part and "]" not in part:
            names.append(part)
            continue
        match = _BRACKET.match(part)
        if match is None:
            raise HostlistError(f"{part!r}: expected prefix[ranges]suffix")
        prefix, inner, suffix = match.groups()
        for item in inner.split(","):
            low, _, high = item.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise HostlistError(f"{part!r}: {item!r} is not a number or a range")
            start, stop = int(low), int(high or low)
            if stop < start:
                raise HostlistError(f"{part!r}: range {item!r} runs backwards")
            width = len(low)
            names.extend(f"{prefix}{str(n).zfill(width)}{suffix}" for n in range(start, stop + 1))
    return names


def _split_top(expression: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in expression:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise HostlistError(f"{expression!r}: unbalanced brackets")
    parts.append(current)
    if any(not p for p in parts):
        raise HostlistError(f"{expression!r}: empty name")
    return parts


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def _fmt(number: int, width: int) -> str:
    return str(number).zfill(width) if width else str(number)


def _natural(text: str) -> list[int | str]:
    return [int(chunk) if chunk.isdigit() else chunk for chunk in re.split(r"(\d+)", text)]
