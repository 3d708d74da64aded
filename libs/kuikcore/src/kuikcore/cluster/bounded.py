"""Status lists bounded by bytes on the way to the API server, kept whole by their writer.

etcd refuses objects over 1.5 MiB, and a (C)ISM `matchingImages` entry is ~286 bytes of JSON,
so a ClusterImageSetMirror tracking ~5,000 images could no longer be written at all (and
its merge patch, which replaces the list whole, passes the 3 MiB request limit sooner). The
lists also cost about as much again in `managedFields`: they are list-maps, and the server
records every item's key and fields under the writer's field manager.

So the Kubernetes backend writes as many entries as fit `DEFAULT_BUDGET` (512 KiB of compact
JSON, leaving room for managedFields, metadata and spec), and replaces the rest with
`status.omitted` (count, a digest of the omitted entries, a summary). The counts beside the
list (`imageCount`, `mirroredCount`, `failedCount`) are computed by the services on the whole
list, so they stay exact. The writer keeps the omitted entries in memory (`Overflow`) and
puts them back wherever it reads its own status (the store, the next write), so the single
writer (the replicator or monitor leader) works on the whole list; everyone else sees the
bounded list and `omitted`. The digest ties the memory to one written status: a status whose
digest does not match (another writer, a restart) is taken as written, and a new leader
rebuilds the omitted entries (images rediscovered, re-checked or re-copied, idempotently).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import structlog

from kuikcore.cluster.interface import ObjectKey

__all__ = ["BOUNDED_LISTS", "DEFAULT_BUDGET", "Overflow", "bound_status", "restore_status"]

log = structlog.get_logger("kuikcore.cluster")

JSON = dict[str, Any]
DEFAULT_BUDGET = 512 * 1024
OMITTED = "omitted"
# kind -> its unbounded status list
BOUNDED_LISTS: dict[str, str] = {
    "ClusterImageSetMirror": "matchingImages",
    "ImageSetMirror": "matchingImages",
    "ClusterImageSetAvailability": "images",
}


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _digest(entries: Sequence[JSON]) -> str:
    text = json.dumps(list(entries), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _summary(list_key: str, omitted: Sequence[JSON], budget: int) -> str:
    if list_key == "images":  # CISA: per availability status
        states: dict[str, int] = {}
        for entry in omitted:
            state = str(entry.get("status") or "Scheduled")
            states[state] = states.get(state, 0) + 1
    else:  # (C)ISM: per copy state of the omitted (image, mirror) pairs
        mirrors = [m for e in omitted for m in e.get("mirrors") or ()]
        mirrored = sum(1 for m in mirrors if m.get("mirroredAt"))
        failed = sum(1 for m in mirrors if m.get("lastError") and not m.get("mirroredAt"))
        states = {
            "mirrored": mirrored,
            "failed": failed,
            "pending": len(mirrors) - mirrored - failed,
        }
    parts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()) if n)
    return f"{len(omitted)} entries not listed (status.{list_key} is limited to {budget} bytes)" + (
        f": {parts}" if parts else ""
    )


def bound_status(status: JSON, list_key: str, budget: int) -> tuple[JSON, list[JSON]]:
    """(`status` with `list_key` cut to `budget` bytes and `omitted` saying so, the entries
    left out). Entries keep their order: the first ones are listed (existing entries keep
    their place, so the oldest stay visible)."""
    entries = status.get(list_key) or []
    base = {k: v for k, v in status.items() if k != OMITTED}
    if _size(entries) <= budget:
        return base, []
    used, kept = 2, 0  # the brackets
    for entry in entries:
        used += _size(entry) + (1 if kept else 0)
        if used > budget:
            break
        kept += 1
    omitted = list(entries[kept:])
    base[list_key] = list(entries[:kept])
    base[OMITTED] = {
        "count": len(omitted),
        "digest": _digest(omitted),
        "message": _summary(list_key, omitted, budget),
    }
    return base, omitted


def restore_status(status: JSON, list_key: str, omitted: Sequence[JSON]) -> JSON:
    """The whole status: the listed entries, then the omitted ones (without `omitted`)."""
    listed = status.get(list_key) or []
    seen = {str(e.get("image")) for e in listed}
    full = {k: v for k, v in status.items() if k != OMITTED}
    full[list_key] = [*listed, *(e for e in omitted if str(e.get("image")) not in seen)]
    return full


_KEEP = 3  # written versions remembered per object: a watch event may lag a newer write


class Overflow:
    """The entries a process left out of the statuses it wrote, per object and digest."""

    def __init__(self) -> None:
        self._entries: dict[ObjectKey, dict[str, list[JSON]]] = {}

    def remember(self, key: ObjectKey, written: JSON, omitted: list[JSON]) -> None:
        """After writing `written` (a bounded status) for `key`."""
        info = written.get(OMITTED)
        versions = self._entries.get(key)
        if info is None:
            if self._entries.pop(key, None) is not None:
                log.info("status list within its byte budget again", object=str(key))
            return
        if versions is None:
            log.warning(
                "status list over its byte budget: entries omitted from the API object",
                object=str(key),
                listed=len(written.get(BOUNDED_LISTS[key.kind]) or ()),
                omitted=len(omitted),
            )
            versions = self._entries[key] = {}
        if versions:  # share the entries the last version already holds: one copy, not three
            last = next(reversed(versions.values()))
            omitted = [
                last[i] if i < len(last) and last[i] == entry else entry
                for i, entry in enumerate(omitted)
            ]
        versions[str(info.get("digest"))] = omitted
        while len(versions) > _KEEP:
            del versions[next(iter(versions))]

    def forget(self, key: ObjectKey) -> None:
        self._entries.pop(key, None)

    def restore(self, key: ObjectKey, raw: JSON) -> JSON:
        """`raw` (an object as the API server has it) with its whole status list, when this
        process wrote that status; else `raw` itself."""
        status = raw.get("status")
        info = (status or {}).get(OMITTED) if isinstance(status, dict) else None
        if not info:
            return raw
        omitted = self._entries.get(key, {}).get(str(info.get("digest")))
        if omitted is None or not isinstance(status, dict):
            return raw
        return {**raw, "status": restore_status(status, BOUNDED_LISTS[key.kind], omitted)}
