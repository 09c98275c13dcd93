"""Finding providers: stevedore over the ``volcano_topology.providers`` entry points.

Only the providers named in configuration are imported. Each one that cannot run
(not installed, fails to import, not a ``Provider`` class, built for another contract
version, installed twice) gets one clear ``LoadError``; the others load regardless.

``provider_paths`` are extra directories searched too, e.g. a volume filled with
``pip install --target DIR vendor-package``.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from stevedore import ExtensionManager, NamedExtensionManager

from volcano_topology.provider import CONTRACT_VERSION, ENTRY_POINT_GROUP, Provider, contract_problem


@dataclass(frozen=True)
class LoadedProvider:
    name: str
    cls: type[Provider]
    target: str  # "module:Class"


@dataclass(frozen=True)
class LoadError:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"provider {self.name!r}: {self.reason}"


@dataclass(frozen=True)
class InstalledProvider:
    name: str
    target: str
    distribution: str
    version: str
    problem: str | None  # why it cannot run here, None when it can


def use_provider_paths(paths: Iterable[str | Path]) -> None:
    """Make packages installed with ``pip install --target DIR`` visible, and forget stale listings."""
    for path in paths:
        entry = str(Path(path).resolve())
        if entry not in sys.path:
            sys.path.append(entry)
    # stevedore keeps a per-process listing per group; the on-disk cache is keyed by sys.path.
    ExtensionManager.ENTRY_POINT_CACHE.pop(ENTRY_POINT_GROUP, None)


def load(
    names: Iterable[str], provider_paths: Iterable[str | Path] = ()
) -> tuple[dict[str, LoadedProvider], list[LoadError]]:
    use_provider_paths(provider_paths)
    wanted = list(dict.fromkeys(names))
    errors: dict[str, LoadError] = {}

    def on_load_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        errors[entry_point.name] = LoadError(
            entry_point.name, f"cannot be imported from {entry_point.value}: {type(exc).__name__}: {exc}"
        )

    def on_missing(missing: Iterable[str]) -> None:
        for name in missing:
            if name not in errors:
                errors[name] = LoadError(
                    name, f"is not installed (no entry point {name!r} in group {ENTRY_POINT_GROUP!r})"
                )

    manager = NamedExtensionManager(
        ENTRY_POINT_GROUP,
        wanted,
        invoke_on_load=False,
        on_load_failure_callback=on_load_failure,
        on_missing_entrypoints_callback=on_missing,
    )
    loaded: dict[str, LoadedProvider] = {}
    seen: dict[str, str] = {}
    for extension in manager.extensions:
        name, plugin, target = extension.name, extension.plugin, extension.entry_point.value
        if name in seen:
            errors[name] = LoadError(name, f"is installed twice ({seen[name]} and {target}); remove one")
            loaded.pop(name, None)
            continue
        seen[name] = target
        problem = why_unusable(plugin)
        if problem is not None:
            errors[name] = LoadError(name, f"{target} {problem}")
        elif name not in errors:
            loaded[name] = LoadedProvider(name, plugin, target)
    return loaded, [errors[n] for n in wanted if n in errors]


class ProviderConfigError(ValueError):
    """A provider's ``config`` block does not fit its settings model."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"provider {name!r}: invalid config: " + "; ".join(problems))
        self.name = name
        self.problems = problems


def instantiate(provider: LoadedProvider, config: Mapping[str, Any] | None) -> Provider:
    """Construct ``provider`` with its ``config`` validated by its ``settings_model`` (when it has one)."""
    model = provider.cls.settings_model
    if model is None:
        return provider.cls(dict(config or {}))
    try:
        settings = model.model_validate(dict(config or {}))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()]
        raise ProviderConfigError(provider.name, problems) from exc
    return provider.cls(settings)


def why_unusable(plugin: object) -> str | None:
    if not (isinstance(plugin, type) and issubclass(plugin, Provider)):
        return f"is not a volcano_topology.provider.Provider subclass (got {plugin!r})"
    return contract_problem(getattr(plugin, "contract_version", None))


def installed(provider_paths: Iterable[str | Path] = ()) -> list[InstalledProvider]:
    """Every installed provider with its package, version and whether it can run here (imports each one)."""
    use_provider_paths(provider_paths)
    found = []
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = entry_point.dist
        try:
            problem = why_unusable(entry_point.load())
        except Exception as exc:
            problem = f"cannot be imported: {type(exc).__name__}: {exc}"
        found.append(
            InstalledProvider(
                entry_point.name,
                entry_point.value,
                dist.name if dist is not None else "?",
                dist.version if dist is not None else "?",
                problem,
            )
        )
    return found


__all__ = [
    "CONTRACT_VERSION",
    "ENTRY_POINT_GROUP",
    "InstalledProvider",
    "LoadError",
    "LoadedProvider",
    "ProviderConfigError",
    "installed",
    "instantiate",
    "load",
]
