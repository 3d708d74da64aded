"""Pure edits that writes are made of: merge patches (RFC 7386) between two documents, for
minimal status writes, and finalizer list edits."""

from __future__ import annotations

from typing import Any

__all__ = ["finalizers_after", "merge_patch_between"]


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


def finalizers_after(current: list[str] | None, finalizer: str, present: bool) -> list[str] | None:
    """The finalizer list with `finalizer` added (`present`) or removed; None when unchanged."""
    finalizers = list(current or [])
    if (finalizer in finalizers) == present:
        return None
    return [*finalizers, finalizer] if present else [f for f in finalizers if f != finalizer]
