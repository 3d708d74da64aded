"""Local mode (`--cluster dir:PATH`): Pods, Secrets and kuik resources from manifest files.

Every `*.yaml`/`*.yml`/`*.json` under PATH (any depth, multi-document, hidden paths skipped)
is read with `kuikcore.manifests`; changes are noticed through `watchfiles` within a second.
kuik never edits those files: what it writes (status, finalizers, copied Secrets, Events)
goes to the state directory (`PATH/.kuik/` unless told otherwise, see `statedir`), and the
store shows it merged over the user's documents, as an API server would.

What a cluster adds to a manifest is filled in deterministically so that several processes
sharing a directory agree: `uid` is derived from kind/namespace/name, `resourceVersion` is
a hash of the content (so a re-read of unchanged files reports nothing), a missing
namespace is "default", a missing `creationTimestamp` is the file's modification time, and
a Pod without `status.phase` is `Running`. A kuik resource's `generation` is 1 until kuik
writes to it, then the one it wrote for, plus one while the file's spec differs from the spec
that write saw: a spec edit makes `observedGeneration` fall behind, as on a cluster.

Unknown fields of a kuik resource are pruned, as the API server prunes them with the CRD's
structural schema (one warning naming them all, per change of the file); a file that cannot be
read or parsed is logged at error level once per change of the file, besides `problems()`.

Deletion follows the API server: when a resource's document disappears while kuik holds a
finalizer on it, the resource stays (with `deletionTimestamp`, last known spec) until the
finalizer is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import watchfiles

from kuikcore.api import parse_resource
from kuikcore.api.prune import prune_unknown_fields
from kuikcore.cluster.documents import (
    ManifestDoc,
    compose_namespace,
    compose_pod,
    compose_resource,
    compose_secret,
    held_deletion,
    kuik_owned,
    manifest_key,
    object_uid,
    secret_body,
    stamp_overlay,
    timestamp,
)
from kuikcore.cluster.events import EventDeduplicator, build_event, regards
from kuikcore.cluster.interface import (
    NAMESPACE,
    POD,
    SECRET,
    ChangeCallback,
    ClusterError,
    EventType,
    InvalidDocument,
    NotFoundError,
    ObjectKey,
    StatusMutator,
)
from kuikcore.cluster.kinds import DEFAULT_KINDS, watched_kind
from kuikcore.cluster.patch import FinalizerEdit, FinalizerWrites, status_after
from kuikcore.cluster.statedir import CLUSTER_SCOPE_DIR, StateDir
from kuikcore.cluster.store import Store
from kuikcore.manifests import InvalidManifest, Manifest, manifest_files, read_manifests

__all__ = ["DEFAULT_STATE_DIR", "LocalCluster"]

log = structlog.get_logger("kuikcore.cluster")

JSON = dict[str, Any]
DEFAULT_STATE_DIR = ".kuik"


@dataclass
class _Snapshot:
    docs: dict[ObjectKey, ManifestDoc] = field(default_factory=dict)
    problems: list[InvalidDocument] = field(default_factory=list)
    overlays: dict[ObjectKey, JSON] = field(default_factory=dict)
    state_secrets: dict[tuple[str, str], JSON] = field(default_factory=dict)


def _pruned(manifest: Manifest) -> Manifest:
    """The manifest without the fields its CRD does not declare, named in one warning."""
    obj, dropped = prune_unknown_fields(manifest.obj)
    if not dropped:
        return manifest
    meta = obj.get("metadata")
    log.warning(
        "unknown fields pruned",
        path=str(manifest.file),
        document=manifest.index,
        kind=obj.get("kind"),
        name=meta.get("name") if isinstance(meta, dict) else None,
        fields=dropped,
    )
    return Manifest(manifest.file, manifest.index, obj)


class LocalCluster(FinalizerWrites):
    """`ClusterSource` over a directory of manifests (see module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        state_dir: str | Path | None = None,
        field_manager: str = "kuik",
        kinds: Collection[str] = DEFAULT_KINDS,
        event_dedup_window: float = 600.0,
        max_events: int = 1000,
        read_only: bool = False,
    ) -> None:
        self.root = Path(path).resolve()
        self._max_events, self._events_written = max_events, 0
        # read_only: a viewer (`kuik status`) that must work on a directory it cannot write;
        # it shows what a writer would (deletion marks included) without recording anything.
        self.read_only = read_only
        self.state = StateDir(
            Path(state_dir).resolve() if state_dir else self.root / DEFAULT_STATE_DIR,
            read_only=read_only,
        )
        self._field_manager = field_manager
        self._kinds = frozenset(watched_kind(kind).kind for kind in kinds)
        self._store = Store(parse_resource)
        self._snapshot = _Snapshot()
        self._pod_cache: dict[ObjectKey, tuple[JSON, str, JSON]] = {}
        self._last_good: dict[Path, tuple[str, list[Manifest]]] = {}
        self._file_cache: dict[Path, tuple[tuple[int, int], list[Manifest] | InvalidManifest]] = {}
        self._lock = asyncio.Lock()
        self._synced = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._stop_watching = asyncio.Event()
        self._dedup = EventDeduplicator(event_dedup_window)
        self._instance = socket.gethostname()
        self.reloads = 0

    # ------------------------------------------------------------------ lifecycle, reading

    @property
    def store(self) -> Store:
        return self._store

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def start(self) -> None:
        if not self.root.is_dir():
            raise ClusterError(f"local cluster directory {self.root} does not exist")
        self._stop_watching.clear()
        self._watcher = asyncio.create_task(self._watch(), name="local-cluster-watch")
        await self.reload()
        self._synced.set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def stop(self) -> None:
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        return self._store.subscribe(callback)

    def problems(self) -> list[InvalidDocument]:
        return [*self._snapshot.problems, *self._store.problems()]

    def _interesting(self, change: watchfiles.Change, path: str) -> bool:
        candidate = Path(path)
        if candidate.name == ".lock" or candidate.suffix == ".tmp":
            return False
        try:
            relative = candidate.relative_to(self.state.root).parts
        except ValueError:
            relative = None
        if relative is not None:
            return bool(relative) and relative[0] in ("resources", "secrets")
        try:
            parts = candidate.relative_to(self.root).parts
        except ValueError:
            return False
        return not any(part.startswith(".") for part in parts)

    async def _watch(self) -> None:
        paths = [self.root]
        if not self.state.root.is_relative_to(self.root):
            if not self.read_only:
                self.state.root.mkdir(parents=True, exist_ok=True)
            if self.state.root.is_dir():
                paths.append(self.state.root)
        while not self._stop_watching.is_set():
            try:
                async for changes in watchfiles.awatch(
                    *paths,
                    watch_filter=self._interesting,
                    debounce=100,
                    step=20,
                    stop_event=self._stop_watching,
                    recursive=True,
                ):
                    state_keys = self._state_keys({Path(path) for _, path in changes})
                    if state_keys is None:
                        await self.reload()
                    else:
                        await self.refresh(state_keys)
            except Exception:  # a reload bug or a vanished directory: keep watching
                log.exception("local cluster watch failed, retrying", path=str(self.root))
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.reload()  # catch up with what changed meanwhile

    def _state_keys(self, paths: set[Path]) -> set[ObjectKey] | None:
        """The objects whose state files changed, or None when a user file changed (then
        everything is read again). Status writes by kuik processes thus cost one file each."""
        keys: set[ObjectKey] = set()
        for path in paths:
            try:
                parts = path.relative_to(self.state.root).parts
            except ValueError:
                return None
            if len(parts) == 4 and parts[0] == "resources":
                namespace = "" if parts[2] == CLUSTER_SCOPE_DIR else parts[2]
                keys.add(ObjectKey(parts[1], namespace, parts[3].removesuffix(".yaml")))
            elif len(parts) == 3 and parts[0] == "secrets":
                keys.add(ObjectKey(SECRET, parts[1], parts[2].removesuffix(".yaml")))
            else:
                return None
        return keys

    async def refresh(self, keys: set[ObjectKey]) -> None:
        """Read the state files of `keys` again (another process wrote them) and republish."""

        def read() -> dict[ObjectKey, JSON | None]:
            found: dict[ObjectKey, JSON | None] = {}
            for key in keys:
                if key.kind == SECRET:
                    found[key] = self.state.read(self.state.secret_path(key.namespace, key.name))
                elif key.kind in self._kinds:
                    found[key] = self.state.read(self.state.resource_path(key))
            return found

        async with self._lock:
            for key, data in (await asyncio.to_thread(read)).items():
                if key.kind == SECRET:
                    target: dict[Any, JSON] = self._snapshot.state_secrets
                    ident: Any = (key.namespace, key.name)
                else:
                    target, ident = self._snapshot.overlays, key
                if data is None:
                    target.pop(ident, None)
                else:
                    target[ident] = data
                self._republish(key)

    async def reload(self) -> None:
        """Read everything again and update the store with the differences."""
        async with self._lock:
            snapshot = await asyncio.to_thread(self._read)
            self._snapshot = snapshot
            for gone in set(self._pod_cache) - set(snapshot.docs):
                del self._pod_cache[gone]
            self._publish()
            self.reloads += 1

    # ------------------------------------------------------------------ reading files (thread)

    def _manifests(self, file: Path) -> tuple[str, list[Manifest] | InvalidManifest]:
        """The file's documents (parsed again only when its mtime or size changed), and its
        modification time (the creationTimestamp of objects that have none)."""
        try:
            stat = file.stat()
        except FileNotFoundError:
            return "", []
        mtime = timestamp(datetime.fromtimestamp(stat.st_mtime, UTC))
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._file_cache.get(file)
        if cached is not None and cached[0] == stamp:
            return mtime, cached[1]
        result: list[Manifest] | InvalidManifest
        try:
            result = [_pruned(manifest) for manifest in read_manifests(file)]
        except InvalidManifest as error:
            # once per change of the file (then cached): the operator must hear of it
            log.error(
                "manifest file unreadable",
                path=str(file),
                document=error.index,
                reason=error.reason,
            )
            result = error
        self._file_cache[file] = (stamp, result)
        return mtime, result

    def _read(self) -> _Snapshot:
        snapshot = _Snapshot()
        files = manifest_files(self.root)
        for stale in set(self._file_cache) - set(files):
            del self._file_cache[stale]
        for stale in set(self._last_good) - set(files):
            del self._last_good[stale]
        for file in files:
            mtime, result = self._manifests(file)
            if isinstance(result, InvalidManifest):
                snapshot.problems.append(
                    InvalidDocument(str(file), result.index, "", "", result.reason)
                )
                # A file caught mid-edit or with a typo must not look like deleted objects
                # (that would drop their status, or start a held deletion's cleanup): keep
                # what it last defined until it parses again or is removed.
                last_mtime, previous = self._last_good.get(file, ("", []))
                for manifest in previous:
                    self._take(snapshot, manifest, last_mtime)
                continue
            self._last_good[file] = (mtime, result)
            for manifest in result:
                self._take(snapshot, manifest, mtime)
        with self.state.locked():
            snapshot.overlays = self._tidy_overlays(snapshot.docs, self.state.resources())
        for secret in self.state.secrets():
            meta = secret.get("metadata") or {}
            if meta.get("namespace") and meta.get("name"):
                snapshot.state_secrets[(meta["namespace"], meta["name"])] = secret
        return snapshot

    def _take(self, snapshot: _Snapshot, manifest: Manifest, mtime: str) -> None:
        key = manifest_key(manifest, self._kinds)
        if key is None:
            return  # other kinds (Deployments, ConfigMaps...) are not kuik's business
        if isinstance(key, InvalidDocument):
            snapshot.problems.append(key)
            return
        first = snapshot.docs.get(key)
        if first is not None:
            reason = f"duplicate of {first.file} (document {first.index}); the first one is used"
            snapshot.problems.append(
                InvalidDocument(str(manifest.file), manifest.index, key.kind, key.name, reason)
            )
            return
        snapshot.docs[key] = ManifestDoc(manifest.obj, str(manifest.file), manifest.index, mtime)

    def _tidy_overlays(
        self, docs: dict[ObjectKey, ManifestDoc], overlays: dict[ObjectKey, JSON]
    ) -> dict[ObjectKey, JSON]:
        """Apply deletion rules to what kuik wrote about resources whose documents are gone
        (called with the state lock held): mark held deletions, drop the rest."""
        kept: dict[ObjectKey, JSON] = {}
        for key, overlay in overlays.items():
            if key.kind not in self._kinds:
                # Documents of kinds this process does not watch are not read, so their absence
                # says nothing: another process (the monitor's CISA status) owns that state.
                continue
            meta = overlay.setdefault("metadata", {})
            path = self.state.resource_path(key)
            # Read-only, the same view is built in memory and nothing is recorded.
            record = not self.read_only
            if key in docs:
                if meta.pop("deletionTimestamp", None) is not None and record:  # put back
                    self.state.write(path, overlay)
                kept[key] = overlay
            elif held_deletion(overlay):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = timestamp(datetime.now(UTC))
                    if record:
                        self.state.write(path, overlay)
                kept[key] = overlay
            elif record:
                self.state.remove(path)  # a re-created resource starts with an empty status
        return kept

    # ------------------------------------------------------------------ publishing (loop)

    def _compose(self, key: ObjectKey) -> JSON | None:
        doc = self._snapshot.docs.get(key)
        if key.kind == POD:
            if doc is None:
                return None
            cached = self._pod_cache.get(key)
            if cached is not None and cached[0] is doc.raw and cached[1] == doc.mtime:
                return cached[2]  # same parsed document: same Pod (a relist of 10k is cheap)
            composed = compose_pod(doc, key)
            self._pod_cache[key] = (doc.raw, doc.mtime, composed)
            return composed
        if key.kind == NAMESPACE:
            return compose_namespace(doc, key) if doc is not None else None
        if key.kind == SECRET:
            state = self._snapshot.state_secrets.get((key.namespace, key.name))
            if state is not None:  # written by kuik, with its own creationTimestamp
                return compose_secret(state, key, doc.mtime if doc else "")
            return compose_secret(doc.raw, key, doc.mtime) if doc is not None else None
        return compose_resource(key, doc, self._snapshot.overlays.get(key))

    def _all_keys(self, kind: str) -> set[ObjectKey]:
        keys = {k for k in self._snapshot.docs if k.kind == kind}
        if kind == SECRET:
            keys |= {ObjectKey(SECRET, ns, name) for ns, name in self._snapshot.state_secrets}
        elif kind not in (POD, NAMESPACE):
            keys |= {k for k in self._snapshot.overlays if k.kind == kind}
        return keys

    def _visible(self, key: ObjectKey, obj: JSON) -> bool:
        """Like the Kubernetes backend's informers: only kuik-owned Secrets are cached."""
        return key.kind != SECRET or kuik_owned(obj)

    def _publish(self) -> None:
        for kind in sorted(self._kinds):
            objects: list[JSON] = []
            origins: dict[ObjectKey, tuple[str, int | None]] = {}
            for key in sorted(self._all_keys(kind)):
                obj = self._compose(key)
                if obj is None or not self._visible(key, obj):
                    continue
                objects.append(obj)
                doc = self._snapshot.docs.get(key)
                if doc is not None:
                    origins[key] = (doc.file, doc.index)
            self._store.replace_kind(kind, objects, origins=origins)

    def _republish(self, key: ObjectKey) -> None:
        obj = self._compose(key) if key.kind in self._kinds else None
        if obj is None or not self._visible(key, obj):
            self._store.remove(key)
        else:
            doc = self._snapshot.docs.get(key)
            self._store.upsert(
                key.kind,
                obj,
                source=doc.file if doc else "cluster",
                index=doc.index if doc else None,
            )

    # ------------------------------------------------------------------ writes

    def _resource_key(self, kind: str, namespace: str, name: str) -> ObjectKey:
        info = watched_kind(kind)
        if not info.is_kuik:
            raise ValueError(f"{kind} is not a kuik kind")
        return ObjectKey(kind, namespace if info.namespaced else "", name)

    async def _rewrite_overlay(self, key: ObjectKey, change: Callable[[JSON, JSON], bool]) -> None:
        """Read-modify-write the overlay of `key` under the state lock; republish it.

        `change(overlay, current)` edits `overlay` in place and says whether to write;
        `current` is the resource as composed right now.
        """
        async with self._lock:

            def cycle() -> JSON | None:
                with self.state.locked():
                    path = self.state.resource_path(key)
                    overlay = self.state.read(path) or {}
                    doc = self._snapshot.docs.get(key)
                    current = compose_resource(key, doc, overlay)
                    if current is None:
                        raise NotFoundError(f"{key} not found in {self.root}")
                    if not change(overlay, current):
                        return overlay
                    meta = stamp_overlay(overlay, key, current)["metadata"]
                    if doc is None and not meta.get("finalizers"):
                        self.state.remove(path)  # last finalizer gone: the deletion completes
                        return None
                    self.state.write(path, overlay)
                    return overlay

            overlay = await asyncio.to_thread(cycle)
            if overlay is None:
                self._snapshot.overlays.pop(key, None)
            else:
                self._snapshot.overlays[key] = overlay
            self._republish(key)

    async def update_status(
        self, kind: str, namespace: str, name: str, mutate: StatusMutator
    ) -> Any:
        key = self._resource_key(kind, namespace, name)

        def change(overlay: JSON, current: JSON) -> bool:
            new = status_after(current, mutate)
            if new is not None:
                overlay["status"] = new
            return new is not None

        await self._rewrite_overlay(key, change)
        resource = self._store.get(key)
        if resource is None:
            raise NotFoundError(f"{key} is not valid or not present: see problems()")
        return resource

    async def _write_finalizers(
        self, kind: str, namespace: str, name: str, edit: FinalizerEdit
    ) -> None:
        def change(overlay: JSON, current: JSON) -> bool:
            finalizers = edit(current["metadata"])
            if finalizers is not None:
                overlay.setdefault("metadata", {})["finalizers"] = finalizers
            return finalizers is not None

        await self._rewrite_overlay(self._resource_key(kind, namespace, name), change)

    # ------------------------------------------------------------------ Secrets

    async def get_secret(self, namespace: str, name: str) -> JSON | None:
        return self._compose(ObjectKey(SECRET, namespace, name))

    async def apply_secret(self, secret: JSON) -> JSON:
        body = secret_body(secret)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        key = ObjectKey(SECRET, namespace, name)
        async with self._lock:

            def write() -> None:
                with self.state.locked():
                    path = self.state.secret_path(namespace, name)
                    previous = (self.state.read(path) or {}).get("metadata") or {}
                    body["metadata"]["creationTimestamp"] = previous.get(
                        "creationTimestamp"
                    ) or timestamp(datetime.now(UTC))
                    self.state.write(path, body, private=True)

            await asyncio.to_thread(write)
            self._snapshot.state_secrets[(namespace, name)] = body
            self._republish(key)
        stored = self._compose(key)
        assert stored is not None
        return stored

    async def delete_secret(self, namespace: str, name: str) -> bool:
        key = ObjectKey(SECRET, namespace, name)
        async with self._lock:
            removed = await asyncio.to_thread(
                self.state.remove, self.state.secret_path(namespace, name)
            )
            self._snapshot.state_secrets.pop((namespace, name), None)
            doc = self._snapshot.docs.get(key)
            self._republish(key)
        if doc is not None:
            raise ClusterError(
                f"Secret {namespace}/{name} is defined in {doc.file}; kuik never edits your files"
            )
        return removed

    # ------------------------------------------------------------------ Events, identity

    async def emit_event(
        self,
        regarding: ObjectKey,
        type: EventType,
        reason: str,
        note: str,
        *,
        action: str = "",
    ) -> None:
        if not self._dedup.admit(regarding, type, reason, note):
            return
        current = self._store.get(regarding)
        uid = object_uid(regarding) if current is not None else None
        now = datetime.now(UTC)
        event = build_event(
            regarding,
            uid,
            type,
            reason,
            note,
            action=action,
            controller=f"kuik.enix.io/{self._field_manager}",
            instance=self._instance,
            now=now,
        )
        meta = event["metadata"]
        path = self.state.event_path(
            meta["namespace"], now.strftime("%Y%m%dT%H%M%S%fZ"), regarding.name
        )
        meta["name"] = path.stem
        try:
            await asyncio.to_thread(self._record_event, path, event)
        except OSError as error:
            self._dedup.forget(regarding, type, reason, note)
            log.warning(
                "could not record event", object=str(regarding), reason=reason, error=str(error)
            )

    def _record_event(self, path: Path, event: JSON) -> None:
        self.state.write(path, event)
        self._events_written += 1
        if self._events_written % 50 == 1:  # a listing now and then keeps the bound cheap
            self.state.prune_events(self._max_events)

    async def list_events(self, regarding: ObjectKey | None = None) -> list[JSON]:
        events = await asyncio.to_thread(self.state.events)
        chosen = [e for e in events if regarding is None or regards(e, regarding)]
        return sorted(
            chosen, key=lambda e: (e.get("eventTime") or "", e["metadata"].get("name", ""))
        )

    async def cluster_id(self) -> str:
        return "local-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
