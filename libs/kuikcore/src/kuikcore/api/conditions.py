"""Status conditions (metav1.Condition) on the five kinds: names, a pure merge, `kubectl wait`.

Every kind carries `Ready` and `Degraded` in `status.conditions` (a list keyed by `type`) and
`status.observedGeneration`. A writer states what it sees as `Wanted` values and merges them
with `with_conditions`: `lastTransitionTime` changes only when a condition's `status` does, so
writing the same view twice writes nothing. `condition_met` is `kubectl wait --for=condition=`'s
rule, so tests and scripts poll the same way an operator's shell does.

What each kind's conditions say is decided here, from the status the writer is about to store
(`mirror_conditions`, `availability_conditions`) or from the spec's filters
(`replicated_conditions`, `invalid_filter_conditions`), so every writer and docs/conditions.md
agree. Images no Pod uses any more (`unusedSince` set) count for neither condition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kuikcore.api.models import format_time
from kuikcore.names import AvailabilityStatus

__all__ = [
    "DEGRADED",
    "READY",
    "ConditionStatus",
    "Reason",
    "Wanted",
    "availability_conditions",
    "condition_met",
    "find_condition",
    "invalid_filter_conditions",
    "mirror_conditions",
    "replicated_conditions",
    "set_condition",
    "with_conditions",
    "with_derived_conditions",
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


def with_derived_conditions(
    status: Mapping[str, Any],
    derive: Callable[[Mapping[str, Any]], list[Wanted]],
    *,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """`status` with the conditions `derive` reads from its own entries (pure; a
    `mutate` for `cluster.update_status` once wrapped).

    A write without `generation` (copy or check results) leaves an `InvalidFilter` verdict
    alone: only a pass that compiled the filter again may lift it."""
    ready = find_condition(status.get("conditions"), READY) or {}
    if generation is None and ready.get("reason") == Reason.INVALID_FILTER:
        return dict(status)
    return with_conditions(status, derive(status), generation=generation, now=now)


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


# --- what each kind's conditions say ------------------------------------------------------

_ERROR_CHARS = 1000
_LISTED = "`kuik status` lists them all"


def _cut(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def _fine(message: str) -> Wanted:
    return Wanted(DEGRADED, ConditionStatus.FALSE, Reason.AS_EXPECTED, message)


def _in_use(entries: Any) -> list[Mapping[str, Any]]:
    return [e for e in entries or () if not e.get("unusedSince")]


def invalid_filter_conditions(field_path: str, reason: str) -> list[Wanted]:
    """Ready False and Degraded True, reason `InvalidFilter`: kuik skips what the filter covers."""
    message = (
        f"{field_path}: {_cut(reason)}. kuik ignores what this filter covers until it is fixed: "
        f"edit {field_path}"
    )
    return [
        Wanted(READY, ConditionStatus.FALSE, Reason.INVALID_FILTER, message),
        Wanted(DEGRADED, ConditionStatus.TRUE, Reason.INVALID_FILTER, message),
    ]


def mirror_conditions(status: Mapping[str, Any]) -> list[Wanted]:
    """(Cluster)ImageSetMirror: Ready when every copy of every image in use is in its mirror,
    Degraded while a copy that is not there failed its last attempt."""
    pairs = [
        (str(entry.get("image")), mirror)
        for entry in _in_use(status.get("matchingImages"))
        for mirror in entry.get("mirrors") or ()
    ]
    present = sum(1 for _, m in pairs if m.get("mirroredAt"))
    failing = [(i, m) for i, m in pairs if m.get("lastError") and not m.get("mirroredAt")]
    if failing:
        image, mirror = failing[0]
        message = (
            f"{len(failing)} of {len(pairs)} image copies failing, e.g. {image} -> "
            f"{mirror.get('image')}: {_cut(str(mirror.get('lastError')))}. Check that the "
            "source can be pulled and that the mirror registry is up and accepts pushes with "
            f"spec.mirrors[].credentialSecret; kuik retries at every resync ({_LISTED})"
        )
        return [
            Wanted(READY, ConditionStatus.FALSE, Reason.COPIES_FAILING, message),
            Wanted(DEGRADED, ConditionStatus.TRUE, Reason.COPIES_FAILING, message),
        ]
    fine = _fine("no image copy is failing")
    if not pairs:
        message = "no image in use to copy: no Pod in scope runs an image this resource selects"
        return [Wanted(READY, ConditionStatus.TRUE, Reason.NO_MATCHING_IMAGES, message), fine]
    if present < len(pairs):
        message = f"{present} of {len(pairs)} image copies present; the others are queued for copy"
        return [Wanted(READY, ConditionStatus.FALSE, Reason.COPIES_PENDING, message), fine]
    message = f"all {len(pairs)} image copies are present in their mirrors"
    return [Wanted(READY, ConditionStatus.TRUE, Reason.MIRRORED, message), fine]


def availability_conditions(status: Mapping[str, Any]) -> list[Wanted]:
    """ClusterImageSetAvailability: Ready once every image in use was checked, Degraded while
    one of them cannot be pulled (any result but Available)."""
    images = _in_use(status.get("images"))
    pending = [e for e in images if e.get("status") in (None, AvailabilityStatus.SCHEDULED)]
    bad = [
        e
        for e in images
        if e.get("status") not in (None, AvailabilityStatus.SCHEDULED, AvailabilityStatus.AVAILABLE)
    ]
    if bad:
        first = bad[0]
        error = f": {_cut(str(first['lastError']))}" if first.get("lastError") else ""
        message = (
            f"{len(bad)} of {len(images)} images in use cannot be pulled, e.g. "
            f"{first.get('image')} ({first.get('status')}{error}). A Pod that starts on a new "
            "node would fail to pull them: restore the image or its registry, fix its pull "
            f"secret, or mirror it ({_LISTED})"
        )
        degraded = Wanted(DEGRADED, ConditionStatus.TRUE, Reason.IMAGES_UNAVAILABLE, message)
    else:
        degraded = _fine("every image checked so far is available")
    if not images:
        message = "no image in use to monitor: no Pod runs an image this resource selects"
        return [Wanted(READY, ConditionStatus.TRUE, Reason.NO_MONITORED_IMAGES, message), degraded]
    if pending:
        message = (
            f"{len(pending)} of {len(images)} images not checked yet; the monitor checks each "
            "registry within its rate budget (monitoring.registries)"
        )
        return [Wanted(READY, ConditionStatus.FALSE, Reason.CHECKS_PENDING, message), degraded]
    message = f"all {len(images)} images in use checked, {len(bad)} unavailable"
    return [Wanted(READY, ConditionStatus.TRUE, Reason.IMAGES_CHECKED, message), degraded]


def replicated_conditions(upstreams: int, problems: Sequence[tuple[str, str]]) -> list[Wanted]:
    """(Cluster)ReplicatedImageSet: Ready when every filter compiles (the webhook then routes
    with all `upstreams`); `problems` are (field path, reason) of the filters that do not."""
    if problems:
        path, reason = problems[0]
        return invalid_filter_conditions(path, reason)
    message = f"the webhook routes the images of selected Pods to its {upstreams} upstreams"
    return [
        Wanted(READY, ConditionStatus.TRUE, Reason.ROUTING, message),
        _fine("every filter is valid"),
    ]
