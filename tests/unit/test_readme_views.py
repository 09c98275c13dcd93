"""The README's tree and picture are the ones the commands it names produce (kept current by test_tree_view)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_shows_docs_tree_example_verbatim_and_the_png() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "```\n" + (ROOT / "docs" / "tree-example.txt").read_text() + "```" in readme
    assert "(docs/images/emulated-fabric.png)" in readme
    assert (ROOT / "docs" / "images" / "emulated-fabric.png").read_bytes().startswith(b"\x89PNG")
