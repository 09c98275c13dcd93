"""Fixtures of the ibnetdiscover provider's tests: the real director.txt dump (tests/data/fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

# A copy of ../shared/fixtures kept in the repository (tests/data/fixtures), so a clone anywhere has it.
DIRECTOR = Path(__file__).resolve().parents[3] / "tests" / "data" / "fixtures" / "ibnetdiscover" / "director.txt"


@pytest.fixture(scope="session")
def director_path() -> Path:
    assert DIRECTOR.is_file(), f"the real dump is part of the repository: {DIRECTOR}"
    return DIRECTOR


@pytest.fixture(scope="session")
def director_text(director_path: Path) -> str:
    return director_path.read_bytes().decode("utf-8")
