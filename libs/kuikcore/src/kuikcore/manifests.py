"""Read Kubernetes YAML manifests from a file or a directory tree (pure: path -> documents).

Used by `kuik route` and by the local cluster backend (`--cluster dir:PATH`): every `*.yaml`,
`*.yml` and `*.json` file at any depth (hidden files and directories skipped), every document
of a multi-document file, in a stable order (sorted paths, then document order). Empty
documents are skipped; a document that is not a mapping or does not parse is an error naming
the file and the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MANIFEST_SUFFIXES", "InvalidManifest", "Manifest", "manifest_files", "read_manifests"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class InvalidManifest(ValueError):
    """`index` is the 0-based document index in `file` (None when the file itself failed)."""

    def __init__(self, file: Path, index: int | None, reason: str) -> None:
        self.file = file
        self.index = index
        self.reason = reason
        where = str(file) if index is None else f"{file}, document {index + 1}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class Manifest:
    file: Path
    index: int
    """0-based position of the document in its file (empty documents counted)."""
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.file}, document {self.index + 1}"


def manifest_files(path: Path | str) -> list[Path]:
    """The manifest files under `path` (or `path` itself when it is a file), sorted."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InvalidManifest(root, None, "no such file or directory")
    files = []
    for candidate in root.rglob("*"):
        relative = candidate.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        if candidate.is_file() and candidate.suffix in MANIFEST_SUFFIXES:
            files.append(candidate)
    return sorted(files)


def _documents(file: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidManifest(file, None, f"cannot read: {exc}") from None
    count = 0  # documents read so far: the failing one is the next
    try:
        for doc in yaml.load_all(text, Loader=_Loader):
            yield count, doc
            count += 1
    except yaml.YAMLError as exc:
        raise InvalidManifest(file, count, f"invalid YAML: {exc}") from None


def read_manifests(path: Path | str) -> list[Manifest]:
    """Every non-empty document under `path`; raises `InvalidManifest`."""
    out = []
    for file in manifest_files(path):
        for index, doc in _documents(file):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise InvalidManifest(file, index, f"expected a mapping, got {type(doc).__name__}")
            out.append(Manifest(file, index, doc))
    return out
