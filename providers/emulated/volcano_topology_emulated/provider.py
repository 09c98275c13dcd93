"""The emulated provider: scans a fabric model as it stands at this moment of its script."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from volcano_topology.api import ExactMatch, HyperNode, HyperNodeSpec, Member, MemberSelector, ObjectMeta
from volcano_topology.provider import Event, ProviderContext, Reply
from volcano_topology.sdk.scanning import ScanningProvider, Topology
from volcano_topology_emulated.model import FabricModel, FabricState

MODELS = Path(__file__).resolve().parent / "models"


class EmulatedSettings(BaseModel):
    """The provider's ``config``: the model inline, or ``modelFile`` naming one (a bare name is a shipped model).

    With ``modelFile``, keys given beside it (``changes``, ``faults``...) replace the file's.
    With ``watchModelFile: true`` the file is read again whenever it changes (checked every
    ``WATCH_PERIOD`` seconds) and scanned at once, so a fabric can change without a restart.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model_file: str | None = Field(None, alias="modelFile")
    watch_model_file: bool = Field(False, alias="watchModelFile")
    fabric: FabricModel
    # The keys given beside modelFile, kept to lay over the file again when it is re-read.
    inline: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "fabric" in data:
            return data
        own = ("modelFile", "model_file", "watchModelFile", "watch_model_file")
        inline = {k: v for k, v in data.items() if k not in own}
        flag = next((data[k] for k in ("watchModelFile", "watch_model_file") if k in data), None)
        watch = {} if flag is None else {"watchModelFile": flag}
        ref = data.get("modelFile") or data.get("model_file")
        if not ref:
            if watch.get("watchModelFile"):
                raise ValueError("watchModelFile needs a modelFile")
            return {"fabric": inline, **watch}
        path = Path(str(ref)) if Path(str(ref)).exists() else MODELS / f"{str(ref).removesuffix('.yaml')}.yaml"
        if not path.exists():
            raise ValueError(f"modelFile {ref}: no such file, and not a shipped model ({', '.join(shipped_models())})")
        return {"modelFile": str(path), "fabric": merged(path, inline), "inline": inline, **watch}


def merged(path: Path, inline: dict[str, Any]) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"modelFile {path}: not a mapping")
    return {**loaded, **inline}


def shipped_models() -> list[str]:
    return sorted(p.stem for p in MODELS.glob("*.yaml"))


def file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class EmulatedProvider(ScanningProvider):
    settings_model = EmulatedSettings
    settings: EmulatedSettings
    interval = 10.0
    WATCH_PERIOD = 0.2

    def __init__(self, settings: EmulatedSettings) -> None:
        super().__init__(settings)
        self.model = settings.fabric
        self.clock = time.monotonic
        self.started_at: float | None = None
        self._built: tuple[FabricModel, list[HyperNode]] | None = None
        self.reloads = 0

    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        if not (self.settings.watch_model_file and self.settings.model_file):
            await super().start(events, replies, ctx)
            return
        watcher = asyncio.create_task(self._watch(Path(self.settings.model_file), ctx))
        try:
            await super().start(events, replies, ctx)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, path: Path, ctx: ProviderContext) -> None:
        """Re-read the model file when its mtime or size changes; a bad file keeps the last good model."""
        seen = file_stamp(path)
        while not ctx.stopping.is_set():
            await asyncio.sleep(self.WATCH_PERIOD)
            stamp = file_stamp(path)
            if stamp == seen or stamp is None:
                continue
            seen = stamp
            try:
                self.model = FabricModel.model_validate(merged(path, self.settings.inline))
            except (OSError, ValueError, yaml.YAMLError) as exc:
                ctx.logger.warning("modelFile %s changed but is not a valid model, keeping the last one: %s", path, exc)
                continue
            self.reloads += 1
            ctx.logger.info("modelFile %s changed: scanning the new model now", path)
            self.rescan()

    def elapsed(self) -> float:
        if self.started_at is None:
            self.started_at = self.clock()
        return self.clock() - self.started_at

    def scan(self) -> Topology:
        """Runs on a scan thread of the SDK's (a blocking scan), so building a large tree never holds up the loop."""
        count = self.stats.scans  # already counts this scan
        faults = self.model.faults
        if faults.slow_scan and count % faults.slow_scan.every == 0:
            time.sleep(faults.slow_scan.seconds)
        if faults.raise_scan and count % faults.raise_scan.every == 0:
            raise RuntimeError(f"injected fault: scan {count} failed")
        if faults.garbage and count % faults.garbage.every == 0:
            state = FabricState.at(self.model, self.elapsed())
            junk: Topology = garbage(faults.garbage.kind, state.tree(self.model).build())
            return junk  # deliberately wrong: the framework must refuse it
        if not self.model.changes and self._built is not None and self._built[0] is self.model:
            # A model without scripted changes reads the same every time: the same result, not rebuilt
            # (at 65,536 nodes a build is seconds of CPU every interval, which a real fabric's scan is not).
            return self._built[1]
        model = self.model  # replaced, never changed, when the model file changes
        built = FabricState.at(model, self.elapsed()).tree(model).build()
        self._built = (model, built)
        return built


def garbage(kind: str, good: list[HyperNode]) -> Any:
    """What a broken vendor API returns: the writer must refuse it and keep the last good topology."""
    if kind == "not-hypernodes":
        return ["switch-1", {"name": "leaf"}]
    leaves = [h for h in good if h.spec is not None and h.spec.tier == 1]
    if kind == "invalid-name":
        bad = Member.model_construct(
            type="Node",
            selector=MemberSelector.model_construct(exact_match=ExactMatch.model_construct(name="NOT_A_NODE")),
        )
        broken = HyperNode.model_construct(
            metadata=ObjectMeta(name=leaves[0].name), spec=HyperNodeSpec.model_construct(tier=1, members=[bad])
        )
        return [broken, *good[1:]] if good and good[0].name == leaves[0].name else [*good, broken]
    # two-leaves: the first leaf's nodes also appear in a second leaf
    stolen = HyperNode(
        metadata=ObjectMeta(name="garbage-leaf"), spec=HyperNodeSpec(tier=1, members=list(leaves[0].members))
    )
    return [*good, stolen]
