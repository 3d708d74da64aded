"""Status conditions (metav1.Condition) on the five kinds: names, a pure merge, `kubectl wait`.

Every kind carries `Ready` and `Degraded` in `status.conditions` (a list keyed by `type`) and
`status.observedGeneration`. A writer states what it sees as `Wanted` values and merges them
with `with_conditions`: `lastTransitionTime` changes only when a condition's `status` does, so
writing the same view twice writes nothing. `condition_met` is `kubectl wait --for=condition=`'s
rule, so tests and scripts poll the same way an operator's shell does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kuikcore.api.models import format_time

__all__ = [
    "DEGRADED",
    "READY",
    "ConditionStatus",
    "Reason",
    "Wanted",
    "condition_met",
    "find_condition",
    "set_condition",
    "with_conditions",
]

READY = "Ready"
"""True once the resource does what its spec asks for the generation it names."""
DEGRADED = "Degraded"
"""True while something needs the operator: copies failing, images unavailable, a bad filter."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Every reason kuik writes (CamelCase, as metav1.Condition requires)."""

    # (Cluster)ImageSetMirror
    MIRRORED = "Mirrored"
    NO_MATCHING_IMAGES = "NoMatchingImages"
    COPIES_PENDING = "CopiesPending"
    COPIES_FAILING = "CopiesFailing"
    # ClusterImageSetAvailability
    IMAGES_CHECKED = "ImagesChecked"
    NO_MONITORED_IMAGES = "NoMonitoredImages"
    CHECKS_PENDING = "ChecksPending"
    IMAGES_UNAVAILABLE = "ImagesUnavailable"
    # (Cluster)ReplicatedImageSet
    ROUTING = "Routing"
    # every kind
    INVALID_FILTER = "InvalidFilter"
    AS_EXPECTED = "AsExpected"


@dataclass(frozen=True, slots=True)
class Wanted:
    """A condition as a writer sees it now (no time, no generation: `with_conditions` adds them)."""

    type: str
    status: ConditionStatus
    reason: Reason
    message: str


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type: str) -> Any:
    """The condition of `type` (a dict), or None."""
    for condition in conditions or ():
        if condition.get("type") == type:
            return condition
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    wanted: Wanted,
    *,
    observed_generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """`conditions` with `wanted` merged in (pure; apimachinery's `meta.SetStatusCondition`).

    An existing condition keeps its place and its `lastTransitionTime` unless its status
    changes; a new one is appended with `now`. `observed_generation` None keeps the one there."""
    out: list[dict[str, Any]] = []
    found = False
    for condition in conditions or ():
        if condition.get("type") != wanted.type:
            out.append(dict(condition))
            continue
        found = True
        merged = dict(condition)
        if merged.get("status") != wanted.status.value:
            merged["lastTransitionTime"] = format_time(now)
        merged.update(status=wanted.status.value, reason=wanted.reason.value)
        merged["message"] = wanted.message
        if observed_generation is not None:
            merged["observedGeneration"] = observed_generation
        out.append(merged)
    if not found:
        new: dict[str, Any] = {
            "type": wanted.type,
            "status": wanted.status.value,
            "lastTransitionTime": format_time(now),
            "reason": wanted.reason.value,
            "message": wanted.message,
        }
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        out.append(new)
    return out


def with_conditions(
    status: Mapping[str, Any],
    wanted: Sequence[Wanted],
    *,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """`status` with every `wanted` condition merged and `observedGeneration` set (pure).

    `generation` is the `metadata.generation` of the spec the writer acted on; None (a write
    that did not look at the spec, such as folding copy results) keeps the observed one, so a
    status never claims a spec it has not seen."""
    observed = generation if generation is not None else status.get("observedGeneration")
    conditions = status.get("conditions")
    for condition in wanted:
        conditions = set_condition(conditions, condition, observed_generation=observed, now=now)
    new = {**status, "conditions": conditions}
    if observed is not None:
        new["observedGeneration"] = observed
    return new


def condition_met(obj: Mapping[str, Any], type: str, status: str = "True") -> bool:
    """`kubectl wait --for=condition=TYPE[=STATUS]` on one object (kubectl's `checkCondition`).

    The condition's `observedGeneration` (else `status.observedGeneration`) must not be behind
    `metadata.generation` when both are known; type and status compare case-insensitively."""
    generation = (obj.get("metadata") or {}).get("generation")
    body = obj.get("status") or {}
    for condition in body.get("conditions") or ():
        if str(condition.get("type", "")).lower() != type.lower() or "status" not in condition:
            continue
        if generation is not None:
            observed = condition.get("observedGeneration", body.get("observedGeneration"))
            if observed is not None and observed < generation:
                return False
        return str(condition["status"]).lower() == status.lower()
    return False
