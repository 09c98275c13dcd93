"""Install the example provider the way a vendor package is installed, load it by name, run it for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.conftest import WriterFactory, cluster_hypernodes, members, run_until
from volcano_topology import registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def provider_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("provider-path")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT / "providers" / "example")],
        check=True,
    )  # fmt: skip
    return target


async def test_pip_installed_example_loads_by_name_and_writes(
    provider_path: Path, monkeypatch: pytest.MonkeyPatch, make_writer: WriterFactory, hypernode_api: client.ApiClient
) -> None:
    # Only the pip-installed copy may be found: forget any import of the source tree.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("providers/example")])
    for module in [m for m in sys.modules if m.startswith("volcano_topology_example")]:
        monkeypatch.delitem(sys.modules, module)
    loaded, errors = registry.load(["example"], [provider_path])
    assert errors == []
    assert loaded["example"].target == "volcano_topology_example.provider:ExampleProvider"
    assert Path(sys.modules[loaded["example"].cls.__module__].__file__ or "").is_relative_to(provider_path)

    with pytest.raises(registry.ProviderConfigError, match=r"provider 'example': invalid config: leaves: "):
        registry.instantiate(loaded["example"], {"leaves": 0})
    provider = registry.instantiate(loaded["example"], {"interval": 60, "leaves": 3, "prefix": "vendor"})

    await run_until(provider, "example", make_writer, lambda run: len(run.channel.owned) == 4)
    objects = cluster_hypernodes(hypernode_api, "example")
    assert members(objects["vendor-spine"]) == ["vendor-leaf-0", "vendor-leaf-1", "vendor-leaf-2"]
    assert members(objects["vendor-leaf-1"]) == ["vendor-node-1-0", "vendor-node-1-1"]
