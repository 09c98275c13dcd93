"""Fixtures of the ibnetdiscover provider's tests: the real director.txt dump, read where it is shared."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/ beside the repository root (the same directory as /work/shared on a developer's machine).
DIRECTOR = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "ibnetdiscover" / "director.txt"


@pytest.fixture(scope="session")
def director_path() -> Path:
    if not DIRECTOR.is_file():
        pytest.skip(f"the real dump is not there: {DIRECTOR} (../shared/fixtures/ibnetdiscover/director.txt)")
    return DIRECTOR


@pytest.fixture(scope="session")
def director_text(director_path: Path) -> str:
    return director_path.read_bytes().decode("utf-8")
