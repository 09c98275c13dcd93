"""The minimal provider shown in the README, run as written against the real API server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.integration.conftest import WriterFactory, cluster_hypernodes, members, run_until

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_provider_source() -> str:
    match = re.search(r"<!-- minimal-provider -->\n```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert match, "the README's minimal provider block is missing"
    return match.group(1)


def test_readme_provider_is_under_30_lines() -> None:
    assert len(readme_provider_source().strip().splitlines()) < 30


async def test_readme_provider_writes_its_tree(make_writer: WriterFactory, hypernode_api: client.ApiClient) -> None:
    namespace: dict[str, Any] = {"__name__": "rack_provider"}
    exec(compile(readme_provider_source(), "README.md", "exec"), namespace)
    provider = namespace["RackProvider"]()
    await run_until(provider, "racks", make_writer, lambda run: len(run.channel.owned) == 3)
    objects = cluster_hypernodes(hypernode_api, "racks")
    assert members(objects["spine-0"]) == ["rack-0", "rack-1"]
    assert members(objects["rack-1"]) == ["node-1-0", "node-1-1"]
