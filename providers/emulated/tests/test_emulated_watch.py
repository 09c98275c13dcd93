"""watchModelFile: the provider re-reads its model file when it changes and scans it at once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from volcano_topology_emulated.provider import EmulatedProvider, EmulatedSettings

from volcano_topology.provider import Event, ProviderContext, Reply

MODEL = {
    "tierNames": {1: "leaf", 2: "spine"},
    "switches": [
        {"name": "spine-0"},
        {"name": "leaf-0", "parents": ["spine-0"], "nodes": ["gpu[1-2]"]},
        {"name": "leaf-1", "parents": ["spine-0"], "nodes": ["gpu[3-4]"]},
    ],
}


def leaves(event: Event) -> dict[str, list[str]]:
    return {
        h.name: sorted(m.selector.exact_match.name for m in h.members if m.selector and m.selector.exact_match)
        for h in event.hypernodes
        if h.spec is not None and h.spec.tier == 1
    }


async def next_snapshot(events: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(events.get(), 20)  # generous: only a hang fails, never a slow machine


def context() -> ProviderContext:
    # The scan interval is an hour: any second snapshot can only come from the file watch.
    return ProviderContext(name="emulated", logger=logging.getLogger("test"), cluster=None, secrets=None,  # type: ignore[arg-type]
                           interval=3600.0)  # fmt: skip


def write(path: Path, model: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(model))


async def test_a_changed_model_file_is_scanned_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "fabric.yaml"
    write(path, MODEL)
    provider = EmulatedProvider(EmulatedSettings.model_validate({"modelFile": str(path), "watchModelFile": True}))
    events: asyncio.Queue[Event] = asyncio.Queue()
    ctx = context()
    task = asyncio.create_task(provider.start(events, asyncio.Queue[Reply](), ctx))
    try:
        assert leaves(await next_snapshot(events)) == {"leaf-0": ["gpu1", "gpu2"], "leaf-1": ["gpu3", "gpu4"]}
        path.write_text("switches: [not, a, model")  # a broken file keeps the last good model
        moved = {**MODEL, "switches": [MODEL["switches"][0], {**MODEL["switches"][1], "nodes": ["gpu1"]},
                                       {**MODEL["switches"][2], "nodes": ["gpu[2-4]"]}]}  # fmt: skip
        await asyncio.sleep(provider.WATCH_PERIOD * 3)
        assert events.empty()
        write(path, moved)
        assert leaves(await next_snapshot(events)) == {"leaf-0": ["gpu1"], "leaf-1": ["gpu2", "gpu3", "gpu4"]}
        assert provider.reloads == 1
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)


async def test_without_watch_model_file_a_changed_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "fabric.yaml"
    write(path, MODEL)
    provider = EmulatedProvider(EmulatedSettings.model_validate({"modelFile": str(path)}))
    events: asyncio.Queue[Event] = asyncio.Queue()
    ctx = context()
    task = asyncio.create_task(provider.start(events, asyncio.Queue[Reply](), ctx))
    try:
        await next_snapshot(events)
        write(path, {**MODEL, "switches": MODEL["switches"][:2]})
        await asyncio.sleep(provider.WATCH_PERIOD * 4)
        assert events.empty() and provider.reloads == 0
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)


def test_inline_keys_are_laid_over_the_file_again_and_watching_needs_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fabric.yaml"
    write(path, MODEL)
    settings = EmulatedSettings.model_validate({"modelFile": str(path), "watchModelFile": True, "namePrefix": "x-"})
    assert settings.watch_model_file and settings.inline == {"namePrefix": "x-"}
    assert settings.fabric.name_prefix == "x-"
    with pytest.raises(ValidationError, match="watchModelFile needs a modelFile"):
        EmulatedSettings.model_validate({**MODEL, "watchModelFile": True})
