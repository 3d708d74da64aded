"""kuikcore.observe.HotLogger, the webhook's path for its line per rerouted container: the same
line as the ordinary structlog path, redacted the same, and the ordinary path whenever the line
could go anywhere else than kuik's one JSON handler."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from kuikcore.observe import REDACTED, HotLogger, configure_logging, get_logger
from kuikcore.observe.logs import FLUSH_BYTES, FLUSH_DELAY, utc_iso

PASSWORD = "hunter2-Sup3rS3cret"

FIELDS: dict[str, Any] = {
    "pod": "shop/web-7d9f",
    "container": "web",
    "original": "registry.a/shop/web:1.4",
    "image": "registry.b/mirror/shop/web:1.4",
    "source": "ClusterImageSetMirror/keep-everything",
    "reason": "first available",
    "rejected": [{"image": "registry.a/shop/web:1.4", "reason": "NotFound: missing (check)"}],
    "dry_run": False,
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out, service="webhook")
    yield out
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_kuik_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _alone() -> None:
    """Take pytest's capture handlers (added for the test's call phase, removed by pytest after
    it) off the root logger: with them there, every line goes the ordinary way and the hot path
    would not be under test at all."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if not getattr(h, "_kuik_handler", False)]:
        root.removeHandler(handler)


def _both(out: io.StringIO, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The line of the ordinary path and of the hot one, timestamps aside."""
    _alone()
    out.seek(0)
    out.truncate()
    get_logger("kuik.webhook").info("rerouting image", **fields)
    hot = HotLogger("kuik.webhook")
    hot.write(hot.prepare("rerouting image", **fields))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert str(line.pop("timestamp")).endswith("Z")
    return lines[0], lines[1]


@pytest.mark.parametrize(
    "extra",
    [{}, {"service": "own"}, {"level": "own"}, {"logger": "own", "timestamp": 1}],
    ids=["plain", "own-service", "own-level", "own-logger-and-timestamp"],
)
def test_the_same_line_as_the_ordinary_path(stream: io.StringIO, extra: dict[str, Any]) -> None:
    ordinary, hot = _both(stream, **FIELDS, **extra)
    assert hot == ordinary
    assert list(hot) == list(ordinary)  # same field order too
    assert hot["service"] == extra.get("service", "webhook")


def test_secrets_never_written_however_often_a_line_is(stream: io.StringIO) -> None:
    _alone()
    hot = HotLogger("kuik.webhook")
    line = hot.prepare(
        "rerouting image",
        **FIELDS,
        password=PASSWORD,
        url=f"https://user:{PASSWORD}@registry.b/v2/",
        rejected_detail=[{"reason": f"Unauthorized: Basic {PASSWORD}"}, {"token": PASSWORD}],
        note=f"password={PASSWORD}",
    )
    for _ in range(3):
        hot.write(line)
    assert PASSWORD not in stream.getvalue()
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[0]["password"] == REDACTED
    assert lines[0]["url"] == f"https://user:{REDACTED}@registry.b/v2/"
    assert lines[0]["rejected_detail"] == [
        {"reason": f"Unauthorized: Basic {REDACTED}"},
        {"token": REDACTED},
    ]
    assert lines[0]["note"] == f"password={REDACTED}"


def test_level_honoured(stream: io.StringIO) -> None:
    configure_logging("warning", json=True, stream=stream)
    hot = HotLogger("kuik.webhook")
    hot.info("rerouting image", **FIELDS)
    hot.write(hot.prepare("rerouting image", **FIELDS))
    assert stream.getvalue() == ""


def test_context_variables_take_the_ordinary_path(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request="r-1")
    ordinary, hot = _both(stream, **FIELDS)
    assert hot == ordinary
    assert hot["request"] == "r-1"


def test_console_rendering_takes_the_ordinary_path(stream: io.StringIO) -> None:
    configure_logging("info", json=False, stream=stream)
    HotLogger("kuik.webhook").info("rerouting image", **FIELDS, token=PASSWORD)
    text = stream.getvalue()
    assert "rerouting image" in text
    assert f"token={REDACTED}" in text
    assert PASSWORD not in text
    assert not text.lstrip().startswith("{")


def test_another_handler_gets_the_record(stream: io.StringIO) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        HotLogger("kuik.webhook").info("rerouting image", **FIELDS)
    finally:
        logging.getLogger().removeHandler(keep)
    assert len(records) == 1
    assert json.loads(stream.getvalue())["event"] == "rerouting image"


def test_lines_written_together_keep_their_order(stream: io.StringIO) -> None:
    _alone()
    hot = HotLogger("kuik.webhook")
    lines = [hot.prepare("rerouting image", **{**FIELDS, "container": c}) for c in "abc"]
    hot.write(*lines)
    written = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line["container"] for line in written] == ["a", "b", "c"]
    structlog.contextvars.bind_contextvars(request="r-2")  # the ordinary path, same order
    hot.write(*lines)
    written = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line["container"] for line in written[3:]] == ["a", "b", "c"]
    assert all(line["request"] == "r-2" for line in written[3:])


async def test_lines_in_a_loop_are_batched_into_one_write(stream: io.StringIO) -> None:
    """Inside an event loop, lines wait at most FLUSH_DELAY and leave together, in order."""
    _alone()
    writes: list[str] = []
    real_write = stream.write

    def counting(text: str) -> int:
        writes.append(text)
        return real_write(text)

    stream.write = counting  # type: ignore[method-assign]
    hot = HotLogger("kuik.webhook")
    for container in "abc":
        hot.write(hot.prepare("rerouting image", **{**FIELDS, "container": container}))
    assert stream.getvalue() == ""  # pending, not lost
    await asyncio.sleep(FLUSH_DELAY * 4)
    written = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line["container"] for line in written] == ["a", "b", "c"]
    assert len(writes) == 1


async def test_flush_writes_what_is_pending_at_once(stream: io.StringIO) -> None:
    _alone()
    hot = HotLogger("kuik.webhook")
    hot.info("rerouting image", **FIELDS)
    hot.flush()
    assert json.loads(stream.getvalue())["container"] == "web"
    await asyncio.sleep(FLUSH_DELAY * 4)  # the cancelled timer writes nothing twice
    assert len(stream.getvalue().splitlines()) == 1


async def test_a_large_batch_is_written_without_waiting(stream: io.StringIO) -> None:
    _alone()
    hot = HotLogger("kuik.webhook")
    line = hot.prepare("rerouting image", **FIELDS)
    written = 0
    while not stream.getvalue() and written < FLUSH_BYTES:  # no await: the loop never runs
        hot.write(line)
        written += 1
    assert stream.getvalue(), "a batch past FLUSH_BYTES waits for nobody"
    assert len(stream.getvalue().encode()) >= FLUSH_BYTES
    assert len(stream.getvalue().splitlines()) == written


async def test_the_ordinary_path_keeps_the_order_of_batched_lines(stream: io.StringIO) -> None:
    _alone()
    hot = HotLogger("kuik.webhook")
    hot.write(hot.prepare("rerouting image", **{**FIELDS, "container": "first"}))
    structlog.contextvars.bind_contextvars(request="r-3")  # this line goes the ordinary way
    hot.write(hot.prepare("rerouting image", **{**FIELDS, "container": "second"}))
    written = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [line["container"] for line in written] == ["first", "second"]


async def test_reconfiguring_sends_pending_lines_where_they_were_meant(
    stream: io.StringIO,
) -> None:
    _alone()
    hot = HotLogger("kuik.webhook")
    hot.info("rerouting image", **FIELDS)
    other = io.StringIO()
    configure_logging("info", json=True, stream=other, service="webhook")
    hot.info("rerouting image", **{**FIELDS, "container": "later"})
    hot.flush()
    assert json.loads(stream.getvalue())["container"] == "web"
    assert json.loads(other.getvalue())["container"] == "later"


@pytest.mark.parametrize(
    "now",
    [1_700_000_000.0, 1_700_000_000.5, 1_700_000_000.123456, 1_700_000_059.9999996, 86_399.000001],
)
def test_timestamps_as_structlog_writes_them(now: float) -> None:
    expected = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    assert utc_iso(now) == expected
    assert utc_iso(now) == expected  # and from the per-second cache


def test_hot_timestamp_is_structlogs_shape(stream: io.StringIO) -> None:
    _both(stream, **FIELDS)  # the ordinary line, then the hot one
    raw = [json.loads(text)["timestamp"] for text in stream.getvalue().splitlines()]
    for stamp in raw:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp), raw
    ordinary, hot = (datetime.fromisoformat(stamp) for stamp in raw)
    assert timedelta(0) <= hot - ordinary < timedelta(seconds=1)
