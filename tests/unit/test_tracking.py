"""kuikcore.tracking: `unusedSince` rules of (C)ISM (§1.6 step 7) and CISA (§1.11 step 2)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuikcore.names import UNUSED_MARKER
from kuikcore.tracking import (
    expires_in,
    is_expired,
    next_unused_since,
    parse_time,
    track,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
EARLIER = "2026-11-20T08:00:00Z"
A = "docker.io/library/a:1"
B = "docker.io/library/b:1"
C = "docker.io/library/c:1"


def everything(_: str) -> bool:
    return True


def never_checked(entry: Mapping[str, Any]) -> bool:
    return bool(entry.get("status", "Scheduled") == "Scheduled")


# --- one entry --------------------------------------------------------------------------


def test_out_of_filter_gets_the_marker_even_when_in_use() -> None:
    assert next_unused_since(None, matches=False, in_use=True, now=NOW) == UNUSED_MARKER
    assert next_unused_since(EARLIER, matches=False, in_use=False, now=NOW) == UNUSED_MARKER


def test_in_use_clears_unused_since() -> None:
    assert next_unused_since(EARLIER, matches=True, in_use=True, now=NOW) is None
    assert next_unused_since(UNUSED_MARKER, matches=True, in_use=True, now=NOW) is None


def test_unused_is_set_once() -> None:
    assert next_unused_since(None, matches=True, in_use=False, now=NOW) == "2026-11-28T12:00:00Z"
    assert next_unused_since(EARLIER, matches=True, in_use=False, now=NOW) == EARLIER


def test_marker_that_matches_again_restarts_the_clock() -> None:
    value = next_unused_since(UNUSED_MARKER, matches=True, in_use=False, now=NOW)
    assert value == "2026-11-28T12:00:00Z"


def test_expire_at_once_gives_the_marker_to_unused_entries_only() -> None:
    assert (
        next_unused_since(None, matches=True, in_use=False, now=NOW, expire_at_once=True)
        == UNUSED_MARKER
    )
    assert next_unused_since(None, matches=True, in_use=True, now=NOW, expire_at_once=True) is None


def test_expiry_rules() -> None:
    day = timedelta(days=1)
    assert not is_expired(None, now=NOW, after=day)
    assert not is_expired(EARLIER, now=NOW, after=None)
    assert not is_expired(UNUSED_MARKER, now=NOW, after=timedelta(0))  # 0 ⇒ never
    assert is_expired(UNUSED_MARKER, now=NOW, after=timedelta(seconds=1))
    assert is_expired(EARLIER, now=NOW, after=day)
    assert not is_expired(EARLIER, now=NOW, after=timedelta(days=30))
    # exactly at the boundary counts as expired (upstream: now - unusedSince >= expiry)
    assert is_expired("2026-11-27T12:00:00Z", now=NOW, after=day)
    assert expires_in("2026-11-28T11:00:00Z", now=NOW, after=timedelta(hours=2)) == timedelta(
        hours=1
    )
    assert expires_in(None, now=NOW, after=day) is None


def test_parse_time_accepts_z_and_naive() -> None:
    assert parse_time("2026-11-28T12:00:00Z") == NOW
    assert parse_time(datetime(2026, 11, 28, 12)) == NOW
    with pytest.raises(ValueError, match="not-a-time"):
        parse_time("not-a-time")


# --- (C)ISM: §1.6 step 7 ----------------------------------------------------------------


def test_mirror_semantics() -> None:
    old: list[dict[str, Any]] = [
        {"image": A, "mirrors": [{"image": "m/a:1", "mirroredAt": EARLIER}]},
        {"image": B, "unusedSince": EARLIER, "mirrors": []},
        {"image": C, "mirrors": []},
    ]
    result = track(
        old,
        current=[A, "docker.io/library/d:1"],
        matches=lambda image: image != C,
        # B is used only through the original-images annotation: still in use
        in_use={A, B, "docker.io/library/d:1"},
        now=NOW,
        new_entry=lambda image: {"image": image, "mirrors": []},
    )
    assert [e["image"] for e in result.entries] == [A, B, C, "docker.io/library/d:1"]
    assert "unusedSince" not in result.entries[0]
    assert result.entries[0]["mirrors"] == old[0]["mirrors"]  # other fields kept
    assert "unusedSince" not in result.entries[1]
    assert result.entries[2]["unusedSince"] == UNUSED_MARKER
    assert result.entries[3] == {"image": "docker.io/library/d:1", "mirrors": []}
    assert result.added == ["docker.io/library/d:1"]
    assert result.stopped_matching == [C]
    assert result.expired == []
    assert old[2] == {"image": C, "mirrors": []}  # input untouched


def test_mirror_entries_never_dropped_without_expiry() -> None:
    old = [{"image": A, "unusedSince": UNUSED_MARKER}, {"image": B, "unusedSince": EARLIER}]
    result = track(old, current=[], matches=lambda _: False, in_use=set(), now=NOW)
    assert [e["image"] for e in result.entries] == [A, B]


def test_became_unused_reported_once() -> None:
    first = track([{"image": A}], current=[], matches=everything, in_use=set(), now=NOW)
    assert first.became_unused == [A]
    second = track(
        first.entries, current=[], matches=everything, in_use=set(), now=NOW + timedelta(hours=1)
    )
    assert second.became_unused == []
    assert second.entries[0]["unusedSince"] == "2026-11-28T12:00:00Z"


def test_duplicate_keys_keep_the_first() -> None:
    result = track(
        [{"image": A, "x": 1}, {"image": A, "x": 2}],
        current=[A],
        matches=everything,
        in_use={A},
        now=NOW,
    )
    assert result.entries == [{"image": A, "x": 1}]


# --- CISA: §1.11 step 2 -----------------------------------------------------------------


def test_availability_semantics() -> None:
    old = [
        {"image": A, "status": "Available", "lastMonitor": EARLIER},  # unused, checked
        {"image": B, "status": "Scheduled"},  # unused, never checked
        {"image": C, "status": "NotFound", "unusedSince": "2026-11-01T00:00:00Z"},  # old
    ]
    result = track(
        old,
        current=["docker.io/library/e:1"],
        matches=everything,
        in_use={"docker.io/library/e:1"},
        now=NOW,
        new_entry=lambda image: {"image": image, "status": "Scheduled", "original": False},
        expire_at_once=never_checked,
        expiry=timedelta(days=7),
    )
    images = [e["image"] for e in result.entries]
    assert images == [A, "docker.io/library/e:1"]  # B instantly, C after 7 days
    assert result.entries[0]["unusedSince"] == "2026-11-28T12:00:00Z"
    assert [e["image"] for e in result.expired] == [B, C]
    assert result.expired[0]["unusedSince"] == UNUSED_MARKER


def test_availability_expiry_zero_keeps_everything() -> None:
    old = [{"image": A, "status": "Scheduled"}, {"image": B, "status": "Available"}]
    result = track(
        old,
        current=[],
        matches=lambda image: image != B,
        in_use=set(),
        now=NOW,
        expire_at_once=never_checked,
        expiry=timedelta(0),
    )
    assert [(e["image"], e["unusedSince"]) for e in result.entries] == [
        (A, UNUSED_MARKER),
        (B, UNUSED_MARKER),
    ]
    assert result.expired == []


# --- properties -------------------------------------------------------------------------

IMAGES = st.sampled_from([A, B, C, "docker.io/library/d:1", "docker.io/library/e:1"])


@given(
    old=st.lists(IMAGES, unique=True),
    current=st.sets(IMAGES),
    extra_in_use=st.sets(IMAGES),
    excluded=st.sets(IMAGES),
)
def test_properties(
    old: list[str], current: set[str], extra_in_use: set[str], excluded: set[str]
) -> None:
    in_use = current | extra_in_use
    result = track(
        [{"image": i} for i in old],
        current=current,
        matches=lambda image: image not in excluded,
        in_use=in_use,
        now=NOW,
    )
    images = [e["image"] for e in result.entries]
    assert images[: len(old)] == old  # stable order, nothing dropped without expiry
    assert images[len(old) :] == sorted(current - set(old))
    for entry in result.entries[: len(old)]:
        image = entry["image"]
        if image in excluded:
            assert entry["unusedSince"] == UNUSED_MARKER
        elif image in in_use:
            assert "unusedSince" not in entry
        else:
            assert entry["unusedSince"] == "2026-11-28T12:00:00Z"
