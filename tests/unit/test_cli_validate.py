"""`volcano-topology validate`: exit codes and one clear line per problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.parity_cases import CASES, hn
from volcano_topology.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, main


def write(tmp_path: Path, name: str, *documents: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents))
    return path


def test_all_valid_exits_zero(tmp_path: Path, capsys: object) -> None:
    valid = [c.document for c in CASES if c.valid]
    assert main(["validate", str(write(tmp_path, "ok.yaml", *valid))]) == EXIT_OK


def test_each_problem_is_one_line_naming_file_object_path_and_rule(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad_tier = hn("leaf-a", tier=-1)
    bad_regex = hn("leaf-b", members=[{"type": "Node", "selector": {"regexMatch": {"pattern": "(?=x)"}}}])
    path = write(tmp_path, "bad.yaml", hn("fine"), bad_tier, bad_regex)
    assert main(["validate", str(path)]) == EXIT_INVALID
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: document 2 (HyperNode leaf-a): spec.tier: ")
    assert "[schema: minimum 0]" in lines[0]
    assert lines[1].startswith(f"{path}: document 3 (HyperNode leaf-b): spec.members[0].selector.regexMatch.pattern: ")
    assert "[admission: RE2 syntax]" in lines[1]


def test_schema_only_ignores_admission_rules(tmp_path: Path) -> None:
    no_members = hn("x")
    no_members["spec"] = {"tier": 1}
    path = write(tmp_path, "x.yaml", no_members)
    assert main(["validate", str(path)]) == EXIT_INVALID
    assert main(["validate", "--schema-only", str(path)]) == EXIT_OK


def test_unreadable_input_is_a_usage_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert main(["validate", str(broken), str(tmp_path / "missing.yaml")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "broken.yaml: cannot read" in err and "missing.yaml: cannot read" in err


def test_reads_standard_input_through_the_console_script() -> None:
    document = yaml.safe_dump(hn("from-stdin", tier="one"))
    proc = subprocess.run(
        [sys.executable, "-m", "volcano_topology.cli", "validate", "-"], input=document, capture_output=True, text=True
    )
    assert proc.returncode == EXIT_INVALID
    assert "-: document 1 (HyperNode from-stdin): spec.tier:" in proc.stdout
