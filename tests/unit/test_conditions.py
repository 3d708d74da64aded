"""The condition helpers: metav1.Condition merging and `kubectl wait`'s rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kuikcore.api import parse_resource
from kuikcore.api.conditions import (
    DEGRADED,
    READY,
    ConditionStatus,
    Reason,
    Wanted,
    availability_conditions,
    condition_met,
    find_condition,
    invalid_filter_conditions,
    mirror_conditions,
    replicated_conditions,
    set_condition,
    with_conditions,
    with_derived_conditions,
)

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
READY_TRUE = Wanted(READY, ConditionStatus.TRUE, Reason.MIRRORED, "all 2 image copies present")
READY_FALSE = Wanted(READY, ConditionStatus.FALSE, Reason.COPIES_PENDING, "1 of 2 present")
NOT_DEGRADED = Wanted(DEGRADED, ConditionStatus.FALSE, Reason.AS_EXPECTED, "no copy failing")


def test_a_new_condition_is_appended_with_now_and_the_generation() -> None:
    out = set_condition(None, READY_TRUE, observed_generation=3, now=T0)
    assert out == [
        {
            "type": "Ready",
            "status": "True",
            "lastTransitionTime": "2026-12-01T10:00:00Z",
            "reason": "Mirrored",
            "message": "all 2 image copies present",
            "observedGeneration": 3,
        }
    ]


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = set_condition(None, READY_FALSE, observed_generation=1, now=T0)
    # same status, new reason and message and generation: time kept
    other = Wanted(READY, ConditionStatus.FALSE, Reason.COPIES_FAILING, "1 failed")
    same = set_condition(first, other, observed_generation=2, now=T1)
    assert same[0]["lastTransitionTime"] == "2026-12-01T10:00:00Z"
    assert (same[0]["reason"], same[0]["message"], same[0]["observedGeneration"]) == (
        "CopiesFailing",
        "1 failed",
        2,
    )
    flipped = set_condition(same, READY_TRUE, observed_generation=2, now=T1)
    assert flipped[0]["lastTransitionTime"] == "2026-12-01T10:05:00Z"
    assert flipped[0]["status"] == "True"
    assert first[0]["reason"] == "CopiesPending"  # pure: the input is not changed


def test_other_conditions_keep_their_place_and_none_keeps_the_generation() -> None:
    both = with_conditions({}, [READY_FALSE, NOT_DEGRADED], generation=4, now=T0)
    assert [c["type"] for c in both["conditions"]] == ["Ready", "Degraded"]
    assert both["observedGeneration"] == 4
    # a write that did not look at the spec (folding results) claims no newer generation
    later = with_conditions(both, [READY_TRUE], generation=None, now=T1)
    assert [c["type"] for c in later["conditions"]] == ["Ready", "Degraded"]
    assert later["observedGeneration"] == 4
    assert find_condition(later["conditions"], READY)["observedGeneration"] == 4
    assert find_condition(later["conditions"], DEGRADED) == both["conditions"][1]
    assert find_condition(later["conditions"], "Progressing") is None


def test_the_same_view_written_twice_changes_nothing() -> None:
    once = with_conditions({"imageCount": 1}, [READY_TRUE, NOT_DEGRADED], generation=1, now=T0)
    assert with_conditions(once, [READY_TRUE, NOT_DEGRADED], generation=1, now=T1) == once


def test_written_conditions_validate_as_the_crd_does() -> None:
    status = with_conditions({}, [READY_TRUE, NOT_DEGRADED], generation=1, now=T0)
    cism = {
        "apiVersion": "kuik.enix.io/v1alpha1",
        "kind": "ClusterImageSetMirror",
        "metadata": {"name": "m"},
        "status": status,
    }
    resource = parse_resource(cism)
    assert resource.to_dict()["status"] == status
    bad = {**status, "conditions": [{**status["conditions"][0], "reason": "not camel"}]}
    with pytest.raises(ValueError, match="reason"):
        parse_resource({**cism, "status": bad})


def obj(generation: int | None, *conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    meta = {"name": "m"} if generation is None else {"name": "m", "generation": generation}
    return {"metadata": meta, "status": {**status, "conditions": list(conditions)}}


def ready(status: str, observed: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"type": "Ready", "status": status}
    if observed is not None:
        found["observedGeneration"] = observed
    return found


@pytest.mark.parametrize(
    ("resource", "wanted", "met"),
    [
        (obj(2, ready("True", 2)), "True", True),
        (obj(2, ready("True", 1)), "True", False),  # stale: written for the old spec
        (obj(2, ready("False", 1)), "False", False),  # stale either way
        (obj(2, ready("True"), observedGeneration=1), "True", False),  # status's generation
        (obj(2, ready("True"), observedGeneration=2), "True", True),
        (obj(2, ready("True")), "True", True),  # nothing observed: the condition alone
        (obj(None, ready("True", 1)), "True", True),  # no generation (old local mode)
        (obj(1, ready("true", 1)), "True", True),  # case-insensitive, like kubectl
        (obj(1, ready("True", 1)), "false", False),
        (obj(1, {"type": "Degraded", "status": "True"}), "True", False),  # absent
        (obj(1, {**ready("True", 1), "type": "ready"}), "True", True),
        ({"metadata": {"generation": 1}}, "True", False),
    ],
)
def test_condition_met_is_kubectl_waits_rule(
    resource: dict[str, Any], wanted: str, met: bool
) -> None:
    assert condition_met(resource, "Ready", wanted) is met


def verdict(wanted: list[Wanted]) -> dict[str, tuple[str, str]]:
    return {w.type: (w.status.value, w.reason.value) for w in wanted}


def mirrors(*states: dict[str, Any], unused: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"image": "src/app:1", "mirrors": list(states)}
    if unused:
        entry["unusedSince"] = "2026-12-01T09:00:00Z"
    return entry


def test_mirror_conditions_from_the_copies_of_images_in_use() -> None:
    done = {"image": "m/app:1", "mirroredAt": "2026-12-01T09:00:00Z"}
    queued = {"image": "n/app:1"}
    failing = {"image": "n/app:1", "lastError": "push refused: 401 Unauthorized"}
    assert verdict(mirror_conditions({})) == {
        "Ready": ("True", "NoMatchingImages"),
        "Degraded": ("False", "AsExpected"),
    }
    assert verdict(mirror_conditions({"matchingImages": [mirrors(done)]})) == {
        "Ready": ("True", "Mirrored"),
        "Degraded": ("False", "AsExpected"),
    }
    pending = mirror_conditions({"matchingImages": [mirrors(done, queued)]})
    assert verdict(pending)["Ready"] == ("False", "CopiesPending")
    assert pending[0].message == "1 of 2 image copies present; the others are queued for copy"
    failed = mirror_conditions({"matchingImages": [mirrors(done, failing)]})
    assert verdict(failed) == {
        "Ready": ("False", "CopiesFailing"),
        "Degraded": ("True", "CopiesFailing"),
    }
    assert failed[1].message.startswith(
        "1 of 2 image copies failing, e.g. src/app:1 -> n/app:1: push refused: 401 Unauthorized."
    )
    # a copy that exists and whose refresh failed is no failure; unused images do not count
    stale = {**done, "lastError": "timeout"}
    assert (
        verdict(mirror_conditions({"matchingImages": [mirrors(stale)]}))["Ready"][1] == "Mirrored"
    )
    unused = {"matchingImages": [mirrors(done), mirrors(failing, unused=True)]}
    assert verdict(mirror_conditions(unused))["Degraded"] == ("False", "AsExpected")
    long_error = {"image": "n/app:1", "lastError": "x" * 5000}
    cut = mirror_conditions({"matchingImages": [mirrors(long_error)]})[0].message
    assert "x" * 997 + "..." in cut
    assert len(cut) < 1400


def test_availability_conditions_from_the_checks_of_images_in_use() -> None:
    def image(name: str, status: str | None, **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"image": name, **extra}
        if status is not None:
            entry["status"] = status
        return entry

    assert verdict(availability_conditions({"images": []}))["Ready"] == (
        "True",
        "NoMonitoredImages",
    )
    waiting = {"images": [image("a", "Available"), image("b", "Scheduled"), image("c", None)]}
    assert verdict(availability_conditions(waiting)) == {
        "Ready": ("False", "ChecksPending"),
        "Degraded": ("False", "AsExpected"),
    }
    gone = {
        "images": [
            image("a", "Available"),
            image("b", "NotFound", lastError="manifest unknown"),
            image("c", "Unreachable", unusedSince="0001-01-01T01:00:00Z"),  # not in use
        ]
    }
    judged = availability_conditions(gone)
    assert verdict(judged) == {
        "Ready": ("True", "ImagesChecked"),
        "Degraded": ("True", "ImagesUnavailable"),
    }
    assert judged[0].message == "all 2 images in use checked, 1 unavailable"
    assert judged[1].message.startswith(
        "1 of 2 images in use cannot be pulled, e.g. b (NotFound: manifest unknown)."
    )


def test_replicated_and_invalid_filter_conditions() -> None:
    assert verdict(replicated_conditions(2, [])) == {
        "Ready": ("True", "Routing"),
        "Degraded": ("False", "AsExpected"),
    }
    broken = replicated_conditions(
        2, [("spec.upstreams[1].imageFilter.include[0]", "invalid regular expression '('")]
    )
    assert verdict(broken) == {
        "Ready": ("False", "InvalidFilter"),
        "Degraded": ("True", "InvalidFilter"),
    }
    assert broken[0].message == (
        "spec.upstreams[1].imageFilter.include[0]: invalid regular expression '('. kuik ignores "
        "what this filter covers until it is fixed: edit spec.upstreams[1].imageFilter.include[0]"
    )
    assert broken == invalid_filter_conditions(
        "spec.upstreams[1].imageFilter.include[0]", "invalid regular expression '('"
    )


def test_derived_conditions_leave_an_invalid_filter_to_the_planning_write() -> None:
    invalid = with_conditions(
        {}, invalid_filter_conditions("spec.filter", "bad"), generation=2, now=T0
    )
    folded = with_derived_conditions(invalid, mirror_conditions, generation=None, now=T1)
    assert folded == invalid  # a fold of copy results cannot lift it
    replanned = with_derived_conditions(invalid, mirror_conditions, generation=3, now=T1)
    assert find_condition(replanned["conditions"], READY)["reason"] == "NoMatchingImages"
    assert replanned["observedGeneration"] == 3
