"""Pure edits that writes are made of: merge patches (RFC 7386) between two documents, for
minimal status writes, and finalizer list edits (with `FinalizerWrites`, the add/remove
methods both backends share)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from kuikcore.api import parse_resource

#: Given an object's metadata, its new finalizer list (None: leave it).
FinalizerEdit = Callable[[Mapping[str, Any]], list[str] | None]

__all__ = [
    "FinalizerEdit",
    "FinalizerWrites",
    "finalizers_after",
    "json_copy",
    "merge_patch_between",
    "status_after",
]


def merge_patch_between(old: Any, new: Any) -> Any:
    """The merge patch turning `old` into `new`: changed keys, `None` for removed ones.

    Lists are replaced whole (merge-patch semantics), which is why callers pair the patch
    with a resourceVersion precondition.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(value, dict) and isinstance(old[key], dict):
                patch[key] = merge_patch_between(old[key], value)
            else:
                patch[key] = value
    return patch


def finalizers_after(meta: Mapping[str, Any], finalizer: str, present: bool) -> list[str] | None:
    """The finalizer list of `meta` (an object's metadata) with `finalizer` added (`present`)
    or removed; None when unchanged.

    Never added to an object being deleted (a deletionTimestamp): the API server refuses it
    (ValidateNoNewFinalizers, 422), and a caller acting on a cached view that predates the
    deletion must not turn that into an error."""
    finalizers = list(meta.get("finalizers") or [])
    if (finalizer in finalizers) == present or (present and meta.get("deletionTimestamp")):
        return None
    return [*finalizers, finalizer] if present else [f for f in finalizers if f != finalizer]


class FinalizerWrites(ABC):
    """`add_finalizer` and `remove_finalizer` of `ClusterSource`, written once over
    `finalizers_after`: a backend supplies only `_write_finalizers`, its read-modify-write."""

    @abstractmethod
    async def _write_finalizers(
        self, kind: str, namespace: str, name: str, edit: FinalizerEdit
    ) -> None:
        """Read-modify-write the object's finalizers: `edit(metadata)` gives the new list, or
        None to write nothing; re-run on the fresh object after a conflict."""

    async def _set_finalizer(
        self, kind: str, namespace: str, name: str, finalizer: str, present: bool
    ) -> bool:
        changed = False

        def edit(meta: Mapping[str, Any]) -> list[str] | None:
            nonlocal changed
            finalizers = finalizers_after(meta, finalizer, present)
            changed = finalizers is not None
            return finalizers

        await self._write_finalizers(kind, namespace, name, edit)
        return changed

    async def add_finalizer(self, kind: str, namespace: str, name: str, finalizer: str) -> bool:
        return await self._set_finalizer(kind, namespace, name, finalizer, True)

    async def remove_finalizer(self, kind: str, namespace: str, name: str, finalizer: str) -> bool:
        return await self._set_finalizer(kind, namespace, name, finalizer, False)


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars): new containers, shared immutable
    scalars. ~3x faster than `copy.deepcopy`, which matters for 10,000-entry statuses."""
    kind = type(value)
    if kind is dict:
        return {k: json_copy(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if kind is list:
        return [json_copy(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = (dict, list)


def status_after(
    current: dict[str, Any], mutate: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """The status `mutate` wants for `current`, None when unchanged.

    The result is validated as the CRD would (`InvalidResource` raised, nothing written), so a
    caller's bug can never make a resource unreadable for everyone else. Only what the mutation
    changed is validated (`_changed_part`), as the API server's validation ratcheting does: a
    10,000-entry status where a batch of checks changed 40 entries validates those 40.
    """
    old = current.get("status") or {}
    new = mutate(json_copy(old))
    if new == old:
        return None
    try:
        parse_resource({**current, "status": _changed_part(old, new)})
    except ValueError:
        parse_resource({**current, "status": new})  # again whole: field paths index whole lists
        raise
    return new


def _changed_part(old: dict[str, Any], new: Any) -> Any:
    """`new` with each top-level list of objects reduced to the items that differ from `old`'s
    item at the same position. Equivalent to validating all of `new` because no status list of
    a kuik kind has a whole-list rule (length or uniqueness): each item is valid on its own.
    Scalars and other fields are kept as they are, so they are always validated."""
    if not isinstance(new, dict):
        return new
    reduced: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if (
            isinstance(value, list)
            and isinstance(before, list)
            and all(isinstance(item, dict) for item in value)
        ):
            reduced[key] = [
                item for i, item in enumerate(value) if i >= len(before) or before[i] != item
            ]
        else:
            reduced[key] = value
    return reduced
