"""Pure edits that writes are made of: merge patches (RFC 7386) between two documents, for
minimal status writes, and finalizer list edits."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kuikcore.api import parse_resource

__all__ = ["finalizers_after", "merge_patch_between", "status_after"]


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


def status_after(
    current: dict[str, Any], mutate: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """The status `mutate` wants for `current`, None when unchanged.

    The result is validated as the CRD would (`InvalidResource` raised, nothing written), so a
    caller's bug can never make a resource unreadable for everyone else.
    """
    old = current.get("status") or {}
    new = mutate(copy.deepcopy(old))
    if new == old:
        return None
    parse_resource({**current, "status": new})
    return new
