"""The hottest frames of a py-spy speedscope profile: ``python -m bench.profile_top FILE [--top N]``.

Prints, over all threads, the share of samples in which each function is on the stack (inclusive)
and at its top (self), so a profile from ``bench.scale --profile`` can be read without a browser.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any


def hottest(profile: dict[str, Any], top: int = 25) -> list[tuple[str, float, float]]:
    """``(frame, inclusive share, self share)``, by inclusive share, over every sampled profile in the file."""
    frames = [f"{f.get('name', '?')} ({Path(f.get('file') or '?').name}:{f.get('line', '?')})"
              for f in profile["shared"]["frames"]]  # fmt: skip
    inclusive: collections.Counter[int] = collections.Counter()
    own: collections.Counter[int] = collections.Counter()
    total = 0.0
    for sampled in profile["profiles"]:
        if sampled.get("type") != "sampled":
            continue
        for stack, weight in zip(sampled["samples"], sampled["weights"], strict=True):
            total += weight
            for index in set(stack):
                inclusive[index] += weight
            if stack:
                own[stack[-1]] += weight
    if not total:
        return []
    return [(frames[i], n / total, own[i] / total) for i, n in inclusive.most_common(top)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_top", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for frame, share, own in hottest(json.loads(args.file.read_text()), args.top):
        print(f"{share:6.1%} {own:6.1%}  {frame}")


if __name__ == "__main__":
    main()
