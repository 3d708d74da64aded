"""Job envelopes, decoding by kind and version, retry backoff, board entry decoding, rate limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuikcore.api import AvailabilityStatus
from kuikcore.coord import ImageAvailability, RateLimit, backoff_delay
from kuikcore.coord.board import decode_image, decode_registry
from kuikcore.coord.job import Envelope, Job, JobDecodeError, JobTypes
from kuikcore.health import HostHealth


class Copy(Job):
    kind = "copy"
    source: str
    mirror: str


class CopyV2(Job):
    kind = "copy"
    version = 2
    source: str
    mirror: str
    platforms: list[str]


def test_envelope_round_trip_keeps_everything() -> None:
    env = Envelope.wrap(Copy(source="a", mirror="b"), token="t1", now_ms=42)
    again = Envelope.loads(env.dumps())
    assert again == env
    assert again.key == Copy(source="a", mirror="b").job_key()
    failed = again.failed("boom")
    assert (failed.attempt, failed.error) == (1, "boom")
    assert again.failed("x", count=False).attempt == 0


def test_job_key_depends_on_payload_only() -> None:
    assert Copy(source="a", mirror="b").job_key() == Copy(mirror="b", source="a").job_key()
    assert Copy(source="a", mirror="b").job_key() != Copy(source="a", mirror="c").job_key()
    assert Copy(source="a", mirror="b").job_key().startswith("copy:")


def test_decoding_picks_the_class_of_kind_and_version() -> None:
    types = JobTypes([Copy, CopyV2])
    env = Envelope.wrap(
        CopyV2(source="a", mirror="b", platforms=["linux/amd64"]), token="t", now_ms=0
    )
    job = types.decode(Envelope.loads(env.dumps()))
    assert isinstance(job, CopyV2)
    assert job.platforms == ["linux/amd64"]


def test_unknown_version_is_retryable_invalid_payload_is_not() -> None:
    only_v1 = JobTypes([Copy])
    env = Envelope.wrap(CopyV2(source="a", mirror="b", platforms=[]), token="t", now_ms=0)
    with pytest.raises(JobDecodeError, match="version 2") as info:
        only_v1.decode(env)
    assert info.value.retryable
    bad = Envelope(
        kind="copy", version=1, key="k", token="t", payload={"source": 1}, enqueued_at_ms=0
    )
    with pytest.raises(JobDecodeError, match="invalid") as info:
        only_v1.decode(bad)
    assert not info.value.retryable


@pytest.mark.parametrize("text", ["", "{", "[]", '{"v": 1}', '{"v": 1, "kind": "copy"}'])
def test_malformed_envelopes_are_not_retryable(text: str) -> None:
    with pytest.raises(JobDecodeError) as info:
        Envelope.loads(text)
    assert not info.value.retryable


def test_future_envelope_version_is_retryable() -> None:
    with pytest.raises(JobDecodeError) as info:
        Envelope.loads(json.dumps({"v": 99}))
    assert info.value.retryable


def test_job_types_refuse_ambiguity() -> None:
    class Nameless(Job):
        pass

    with pytest.raises(ValueError, match="non-empty"):
        JobTypes([Nameless])
    with pytest.raises(ValueError, match="two job classes"):
        JobTypes([Copy, Copy])


@given(attempt=st.integers(1, 200), r=st.floats(0, 1))
def test_backoff_is_capped_exponential_with_jitter(attempt: int, r: float) -> None:
    delay = backoff_delay(attempt, base=1.0, cap=300.0, rand=lambda: r)
    ceiling = min(300.0, 2.0 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_grows_then_caps() -> None:
    delays = [backoff_delay(a, base=1.0, cap=8.0, rand=lambda: 1.0) for a in range(7)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_board_entries_decode_or_read_as_unknown() -> None:
    entry = ImageAvailability(
        status=AvailabilityStatus.NOT_FOUND,
        checked_at=datetime(2026, 1, 2, tzinfo=UTC),
        digest=None,
        error="manifest unknown",
    )
    assert decode_image(entry.to_json()) == entry
    for garbage in [
        None,
        "",
        "nope",
        "[]",
        '{"status": "Gone", "checked_at": 1}',
        '{"status": "Available"}',
    ]:
        assert decode_image(garbage) is None
    health = decode_registry(
        '{"up": false, "confirmed_at": 10, "since": 5, "by": "probe", "error": "refused",'
        ' "successes": 1}'
    )
    assert health == HostHealth(False, 10.0, 5.0, "probe", "refused", 1)
    # an entry without `since` (or of an earlier kuik) counts from its confirmation
    older = decode_registry('{"up": true, "confirmed_at": 7}')
    assert older == HostHealth(True, 7.0, 7.0, "")
    assert decode_registry('{"up": "yes", "confirmed_at": 1}') is None
    assert decode_registry('{"up": true, "checked_at": 1}') is None  # no confirmation time


def test_rate_limit_validates_and_spaces_requests() -> None:
    assert RateLimit(count=6, period=3600).interval == 600
    with pytest.raises(ValueError, match="count >= 1"):
        RateLimit(count=0, period=1)


def test_queue_and_lane_names_must_fit_in_key_names() -> None:
    from kuikcore.coord import JobQueue, connect

    coord = connect("redis://127.0.0.1:1")  # nothing is sent while building a queue
    JobQueue(coord, "replicator:cluster-1", [Copy], lanes=("expedite", "routine", "bulk"))
    with pytest.raises(ValueError, match="queue name 'a b'"):
        JobQueue(coord, "a b", [Copy])
    with pytest.raises(ValueError, match="lane 'x:y'"):
        JobQueue(coord, "copies", [Copy], lanes=("x:y",))
    with pytest.raises(ValueError, match="lane 'dead'"):
        JobQueue(coord, "copies", [Copy], lanes=("dead",))
    with pytest.raises(ValueError, match="distinct"):
        JobQueue(coord, "copies", [Copy], lanes=("a", "a"))
    with pytest.raises(ValueError, match="visibility_timeout"):
        JobQueue(coord, "copies", [Copy], visibility_timeout=0)
