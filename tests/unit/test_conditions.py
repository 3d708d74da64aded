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
    condition_met,
    find_condition,
    set_condition,
    with_conditions,
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
