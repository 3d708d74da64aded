"""kuik_monitor.scheduler: next image per registry, due times from lastMonitor (upstream §1.11 step 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kuik_monitor.scheduler import Schedule, due_at, listed, registry_host
from kuikcore.api import UNUSED_MARKER
from kuikcore.reference import parse

T0 = datetime(2026, 8, 1, 10, 0, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def e(image: str, last: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "image": image,
        "status": "Available" if last is not None else "Scheduled",
    }
    if last is not None:
        out["lastMonitor"] = at(last)
    return out | extra


def test_registry_host_matches_reference_parsing() -> None:
    for image in [
        "docker.io/library/nginx:1",
        "localhost:5000/a/b@sha256:" + "0" * 64,
        "[::1]:5000/x:1",
        "quay.io/a/b",
    ]:
        assert registry_host(image) == parse(image).registry_host
    assert registry_host("nohost") is None


def test_never_checked_first_then_oldest_per_host() -> None:
    schedule = Schedule.build(
        [
            ("a", listed([e("r1.example/x:1", 5), e("r1.example/y:1", 1), e("r2.example/z:1", 3)])),
            ("b", listed([e("r1.example/w:1", 9), e("r1.example/new:1")])),
        ]
    )
    assert schedule.next_image("r1.example") == "r1.example/new:1"
    assert schedule.next_image("r2.example") == "r2.example/z:1"
    assert schedule.registry_last_monitor("r1.example") == T0 + timedelta(minutes=9)
    schedule.record("r1.example/new:1", T0 + timedelta(minutes=10))
    assert schedule.next_image("r1.example") == "r1.example/y:1"
    assert schedule.registry_last_monitor("r1.example") == T0 + timedelta(minutes=10)
    assert schedule.next_image("unknown.example") is None
    assert len(schedule) == 5


def test_image_in_several_cisas_is_one_entry_with_its_oldest_check() -> None:
    schedule = Schedule.build(
        [
            ("a", listed([e("r.example/x:1", 5), e("r.example/y:1", 3)])),
            ("b", listed([e("r.example/x:1", 1)])),
            ("c", listed([e("r.example/y:1")])),  # never checked in c: the image is due first
        ]
    )
    assert schedule.owners == {"r.example/x:1": ["a", "b"], "r.example/y:1": ["a", "c"]}
    assert schedule.last_monitor("r.example/x:1") == T0 + timedelta(minutes=1)
    assert schedule.next_image("r.example") == "r.example/y:1"


def test_out_of_filter_entries_are_not_scheduled_and_recent_checks_win() -> None:
    schedule = Schedule.build(
        [("a", listed([e("r.example/x:1", unusedSince=UNUSED_MARKER), e("r.example/y:1", 2)]))],
        recent={"r.example/y:1": T0 + timedelta(minutes=30), "r.example/gone:1": T0},
    )
    assert schedule.images("r.example") == ["r.example/y:1"]
    assert schedule.registry_last_monitor("r.example") == T0 + timedelta(minutes=30)


def test_due_one_tick_after_newest_check() -> None:
    tick = timedelta(minutes=10)
    assert due_at(None, tick, T0) == T0
    assert due_at(T0 - timedelta(minutes=4), tick, T0) == T0 + timedelta(minutes=6)
    assert due_at(T0 - timedelta(hours=1), tick, T0) == T0


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5), st.none() | st.integers(0, 100)),
        max_size=30,
    )
)
def test_choice_is_never_checked_or_minimal(rows: list[tuple[str, int, int | None]]) -> None:
    """Property: the chosen image is unchecked if any is, else has the smallest lastMonitor."""
    entries = [e(f"h.example/i{n}:1", last) for _, n, last in rows]
    schedule = Schedule.build(
        [(cisa, listed([entry])) for (cisa, _, _), entry in zip(rows, entries, strict=True)]
    )
    chosen = schedule.next_image("h.example")
    if not rows:
        assert chosen is None
        return
    lasts = {img: schedule.last_monitor(img) for img in schedule.images("h.example")}
    assert chosen in lasts
    if any(v is None for v in lasts.values()):
        assert lasts[chosen] is None
    else:
        assert lasts[chosen] == min(v for v in lasts.values() if v is not None)
