"""Identical admissions answered from memory: the Pods of one ReplicaSet differ only by uid.

The key is the request without its uid (operation, subresource, dryRun, namespace, name, the
object and oldObject as orjson bytes). The handler keeps only admissions that read nothing (no
Secret, every verdict from the TTL cache), until the first verdict used expires; the whole
memory is dropped when its stamp (route generation, `TTLCache.version`) moves, since a routing CR
change or a new verdict may change any answer. Bounded in entries and in the bytes the keys hold.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from kuik_webhook.review import AdmissionRequest, ResponseTemplate
from kuik_webhook.stale import StaleMirror
from kuikcore.observe import LogLine

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "AdmissionMemo", "MemoKey", "RememberedAdmission", "Stamp"]

MAX_ENTRIES = 1024  # distinct Pod shapes within a cache TTL
MAX_BYTES = 16 * 1024 * 1024  # and the Pods they key on, in encoded bytes at most

MemoKey = tuple[Any, ...]
Stamp = tuple[int, tuple[int, int]]
"""(route generation, verdict cache version): what every remembered answer depends on."""


@dataclass(frozen=True, slots=True)
class RememberedAdmission:
    """An admission's outcome, for the admissions with the same request apart from the uid.

    What it did beyond the answer is repeated on every reuse: the reroute log lines and
    metrics, the stale-mirror reports, the warnings about bad CRs."""

    template: ResponseTemplate
    result: str
    valid_until: float
    problems: tuple[str, ...]
    lines: tuple[LogLine, ...]
    reroutes: tuple[Any, ...]
    stale_jobs: tuple[StaleMirror, ...]


class AdmissionMemo:
    """`key(request, stamp)`, `get(key)`, `remember(key, entry, stamp)`; LRU, bounded."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[MemoKey, RememberedAdmission] = OrderedDict()
        self._stamp: Stamp = (-1, (-1, -1))

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, request: AdmissionRequest, stamp: Stamp) -> MemoKey | None:
        """Everything an admission reads from its request except the uid (None: not kept).

        A `stamp` other than the memory's empties it first: a CR changed or a verdict arrived."""
        if stamp != self._stamp:
            self._entries.clear()
            self.bytes = 0
            self._stamp = stamp
        try:
            obj = orjson.dumps(request.object)
            old = None if request.old_object is None else orjson.dumps(request.old_object)
        except TypeError:  # what orjson cannot encode (stdlib-decoded oddities): not kept
            return None
        return (
            request.operation,
            request.sub_resource,
            request.dry_run,
            request.namespace,
            request.name,
            obj,
            old,
        )

    def get(self, key: MemoKey | None) -> RememberedAdmission | None:
        return self._entries.get(key) if key is not None else None

    def remember(self, key: MemoKey, entry: RememberedAdmission, stamp: Stamp) -> None:
        """Keep `entry` unless something changed while its admission ran (`stamp` moved)."""
        if stamp != self._stamp:
            return
        if self._entries.pop(key, None) is not None:  # an expired one, replaced
            self.bytes -= _key_bytes(key)
        self._entries[key] = entry
        self.bytes += _key_bytes(key)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest, _ = self._entries.popitem(last=False)
            self.bytes -= _key_bytes(oldest)


def _key_bytes(key: MemoKey) -> int:
    """The size of the encoded object and oldObject a memory key holds."""
    return sum(len(part) for part in key if isinstance(part, bytes))
