"""The install commands in README.md and deploy/README.md are the ones the deploy tests run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_deploy_helm import INSTALL
from tests.unit.test_deploy_manifests import ROOT, TARGETS

READMES = [ROOT / "README.md", ROOT / "deploy" / "README.md"]


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_install_commands_shown_are_the_tested_ones(readme: Path) -> None:
    text = readme.read_text()
    assert "helm " + " ".join(INSTALL) in text
    for target in TARGETS:
        command = f"kubectl apply -k {target}/" if target == "deploy" else f"kubectl apply -k {target}"
        assert command in text, command
