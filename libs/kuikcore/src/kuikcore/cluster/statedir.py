"""The directory where local mode writes (default `PATH/.kuik/`): what a cluster would store.

Layout (all YAML, readable by a user):

    resources/<Kind>/<namespace or _cluster>/<name>.yaml   status, finalizers, deletion mark
    secrets/<namespace>/<name>.yaml                        Secrets kuik wrote (mode 0600)
    events/<namespace>/<time>-<name>-<id>.yaml             Events kuik recorded

Every write is atomic (a temporary file in the same directory, then rename), so a reader
never sees half a file; read-modify-write cycles hold an exclusive `flock` on `.lock`, so
several kuik processes sharing one directory never lose each other's updates.

Opened `read_only` (`kuik status`), it never creates, writes or removes anything, not even the
lock file: a reader takes a shared `flock` on `.lock` when it exists (so it never sees a
read-modify-write half done) and none otherwise, so it works on a directory it may not write.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kuikcore.cluster.interface import ObjectKey

__all__ = ["CLUSTER_SCOPE_DIR", "StateDir"]

JSON = dict[str, Any]
CLUSTER_SCOPE_DIR = "_cluster"  # stands for the namespace of cluster-scoped objects
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class StateDir:
    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = root
        self.read_only = read_only
        # resource files by path: (the text last read or written, its parsed mapping). Status
        # folds re-read a file this process usually wrote itself; with libyaml a 50-image status
        # still takes ~6 ms to parse against ~0.6 ms to copy, so equal text skips the parse.
        self._parsed: dict[Path, tuple[str, JSON]] = {}

    # ------------------------------------------------------------------ paths

    def resource_path(self, key: ObjectKey) -> Path:
        return (
            self.root
            / "resources"
            / key.kind
            / (key.namespace or CLUSTER_SCOPE_DIR)
            / f"{key.name}.yaml"
        )

    def secret_path(self, namespace: str, name: str) -> Path:
        return self.root / "secrets" / namespace / f"{name}.yaml"

    def event_path(self, namespace: str, stamp: str, name: str) -> Path:
        unique = secrets.token_hex(4)
        return self.root / "events" / namespace / f"{stamp}-{name}-{unique}.yaml"

    # ------------------------------------------------------------------ reading

    def read(self, path: Path) -> JSON | None:
        """A state file's mapping; None when absent (or not a mapping: treated as absent)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._parsed.pop(path, None)
            return None
        known = self._parsed.get(path)
        if known is not None and known[0] == text:
            return copy.deepcopy(known[1])
        data = yaml.load(text, Loader=_Loader)
        if not isinstance(data, dict):
            return None
        self._remember(path, text, data)
        return data

    def _remember(self, path: Path, text: str, data: JSON) -> None:
        if path.is_relative_to(self.root / "resources"):  # not events: they only accumulate
            self._parsed[path] = (text, copy.deepcopy(data))

    def _all(self, *parts: str) -> Iterator[tuple[Path, JSON]]:
        base = self.root.joinpath(*parts)
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*.yaml")):
            try:
                data = self.read(path)
            except (OSError, yaml.YAMLError):
                continue  # a user's stray edit; ignored rather than fatal
            if data is not None:
                yield path, data

    def resources(self) -> dict[ObjectKey, JSON]:
        found: dict[ObjectKey, JSON] = {}
        for path, data in self._all("resources"):
            relative = path.relative_to(self.root / "resources").parts
            if len(relative) != 3:
                continue
            kind, namespace, file = relative
            namespace = "" if namespace == CLUSTER_SCOPE_DIR else namespace
            found[ObjectKey(kind, namespace, file.removesuffix(".yaml"))] = data
        return found

    def secrets(self) -> list[JSON]:
        return [data for _, data in self._all("secrets")]

    def events(self) -> list[JSON]:
        return [data for _, data in self._all("events")]

    def prune_events(self, keep: int) -> int:
        """Delete all but the newest `keep` Event files (names start with their time), as an
        API server expires Events; returns how many went."""
        base = self.root / "events"
        if not base.is_dir():
            return 0
        files = sorted(base.rglob("*.yaml"), key=lambda p: p.name)
        doomed = files[: max(0, len(files) - keep)]
        for path in doomed:
            self.remove(path)
        return len(doomed)

    # ------------------------------------------------------------------ writing

    def write(self, path: Path, data: JSON, *, private: bool = False) -> None:
        """Atomically replace `path` with `data` as YAML (mode 0600 when `private`)."""
        self._writable()
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temporary, 0o600 if private else 0o644)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._remember(path, text, data)

    def remove(self, path: Path) -> bool:
        self._writable()
        self._parsed.pop(path, None)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"state directory {self.root} is opened read-only")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes (flock) for one read-modify-write cycle; shared, and only
        if the lock file exists, when read-only."""
        if self.read_only:
            with self._shared():
                yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        try:
            handle = open(self.root / ".lock", "rb")  # noqa: SIM115 (closed below)
        except OSError:  # no writer ever ran here, or unreadable: nothing to wait for
            yield
            return
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
