"""The provider template behind ``volcano-topology new-provider NAME``.

``provider/`` holds the files of a new provider package; each ``*.tmpl`` file is copied with
``{{name}}``, ``{{module}}``, ``{{Class}}``, ``{{distribution}}`` and ``{{vt_version}}``
replaced, ``__module__`` in a path becomes the module name, and ``dotname.tmpl`` files
(``gitignore``, ``dockerignore``) become ``.name``.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_DOTFILES = {"gitignore", "dockerignore"}


class TemplateError(ValueError):
    """The name cannot be a provider's name, or the target directory is not empty."""


@dataclass(frozen=True)
class Names:
    name: str  # the entry-point name: the `source` in configuration
    module: str
    cls: str  # the class-name stem: {cls}Provider, {cls}Settings
    distribution: str
    vt_version: str

    @classmethod
    def of(cls, name: str) -> Names:
        if not NAME_PATTERN.match(name) or len(name) > 63:
            raise TemplateError(
                f"{name!r} is not a usable provider name: lowercase letters, digits and single '-' between "
                "them, starting with a letter, at most 63 characters (it is the `source` in configuration)"
            )
        snake = name.replace("-", "_")
        return cls(
            name=name,
            module=f"{snake}_topology_provider",
            cls="".join(part.capitalize() for part in name.split("-")),
            distribution=f"volcano-topology-provider-{name}",
            vt_version=_version(),
        )

    def fill(self, text: str) -> str:
        for key, value in (("name", self.name), ("module", self.module), ("Class", self.cls),
                           ("distribution", self.distribution), ("vt_version", self.vt_version)):  # fmt: skip
            text = text.replace("{{" + key + "}}", value)
        return text


def _version() -> str:
    try:
        return importlib.metadata.version("volcano-topology")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def render_provider(name: str, directory: Path) -> list[Path]:
    """Write a new provider package for ``name`` into ``directory`` (missing or empty); return the files."""
    names = Names.of(name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TemplateError(f"{directory} exists and is not an empty directory")
    written: list[Path] = []
    root = resources.files(__name__).joinpath("provider")
    for source, relative in sorted(_walk(root, ()), key=lambda item: item[1]):
        target = directory.joinpath(*(names.fill(part.replace("__module__", names.module)) for part in relative))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(names.fill(source.read_text(encoding="utf-8")), encoding="utf-8")
        written.append(target)
    return written


def _walk(node: Traversable, prefix: tuple[str, ...]) -> list[tuple[Traversable, tuple[str, ...]]]:
    found: list[tuple[Traversable, tuple[str, ...]]] = []
    for child in node.iterdir():
        if child.is_dir():
            if child.name != "__pycache__":
                found.extend(_walk(child, (*prefix, child.name)))
        elif child.name.endswith(".tmpl"):
            stem = child.name.removesuffix(".tmpl")
            found.append((child, (*prefix, f".{stem}" if stem in _DOTFILES else stem)))
    return found


__all__ = ["Names", "TemplateError", "render_provider"]
