"""One logging setup for every kuik process: structlog in front, the stdlib routed through it.

JSON lines when the output is not a terminal (what log collectors want), a readable console
rendering on a TTY. Third-party libraries that log through `logging` (aiohttp, redis, the Kubernetes
client) end up in the same stream, with the same fields, and through the same secret redaction.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from kuikcore.observe.redact import redact_event

__all__ = ["LOG_LEVELS", "HotLogger", "LogLine", "configure_logging", "get_logger"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_HANDLER_MARK = "_kuik_handler"


@dataclass(frozen=True, slots=True)
class _JsonSetup:
    """What `HotLogger` needs to write a line exactly where the configured handler would."""

    handler: logging.Handler
    stream: TextIO
    service: str | None


_json_setup: _JsonSetup | None = None
_OWN_KEYS = frozenset({"level", "logger", "timestamp"})  # what the pipeline sets itself


def _add_fields(fields: dict[str, Any]) -> Processor:
    def add(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return add


def configure_logging(
    level: str = "INFO",
    json: bool | None = None,
    *,
    stream: TextIO | None = None,
    service: str | None = None,
) -> None:
    """Set up structlog and the root stdlib logger. Calling again replaces the previous setup.

    `json=None` picks JSON lines unless `stream` (default stderr) is a terminal. `service`, when
    given, is added to every line so aggregated logs say which process wrote them.
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()
    use_json = not tty if json is None else json

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if service is not None:
        shared.append(_add_fields({"service": service}))
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=tty, exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become text *before* redaction, so secrets in them are masked too.
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    global _json_setup
    _json_setup = _JsonSetup(handler, out, service) if use_json else None
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger named like a stdlib logger (`kuik.webhook`, `kuikcore.registry`)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@dataclass(frozen=True, slots=True)
class LogLine:
    """An event and its fields, redacted and rendered once, to be written any number of times."""

    event: str
    fields: dict[str, Any]
    rendered: bytes
    """`"key":value,...,"event":"..."`: the redacted fields as JSON members, without braces."""


FLUSH_DELAY = 0.005
"""How long a hot line may wait for others before it is written: one write per batch, not per line."""
FLUSH_BYTES = 64 * 1024
"""A batch this large is written at once, so a burst never holds much in memory."""

_hot_loggers: weakref.WeakSet[HotLogger] = weakref.WeakSet()


@atexit.register
def _flush_hot_loggers() -> None:
    for hot in list(_hot_loggers):
        hot.flush()


_second_cache: tuple[int, str] = (-1, "")


def _utc_now_iso() -> str:
    return utc_iso(time.time())


def utc_iso(now: float) -> str:
    """`now` as structlog's `TimeStamper(fmt="iso", utc=True)` writes it, at a fraction of its
    cost (its `datetime` formatting was the largest part of a hot line): the date and time of
    day are formatted once per second."""
    global _second_cache
    second = int(now)
    micro = round((now - second) * 1_000_000)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    cached_second, prefix = _second_cache
    if cached_second != second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (second, prefix)
    return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"


class HotLogger:
    """A logger for a line written on a hot path (the webhook's line per rerouted container).

    The same JSON line as `get_logger(name)` would write (same fields in the same order, the
    same secret redaction), without the stdlib record, frame walking and formatter copies; and a
    line can be prepared once (`prepare`: redacted and rendered) and written again and again
    (`write`: only the timestamp is new). Whenever the line could go anywhere else than the one
    kuik handler (console rendering, another handler attached as pytest's caplog does, context
    variables bound), it goes the ordinary structlog way, so what reaches a handler never
    differs.

    Inside a running event loop, lines are batched: written together at most `FLUSH_DELAY`
    after the first of them (or at once past `FLUSH_BYTES`), because one write and flush per
    admission was the largest cost left on the webhook's path. The price: a process killed
    outright loses the last few milliseconds of these lines; `flush()` (called by the service
    on shutdown, and at interpreter exit) writes what is pending. The timestamp is the time
    of `write`, not of the batch.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._std = logging.getLogger(name)
        self._root = logging.getLogger()
        self._fallback = get_logger(name)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_setup: _JsonSetup | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tails_for: _JsonSetup | None = None
        self._tails_cache: tuple[bytes, bytes | None, bytes] = (b"", None, b"")
        _hot_loggers.add(self)

    def _setup(self) -> _JsonSetup | None:
        setup = _json_setup
        if setup is None or self._root.handlers != [setup.handler]:
            return None
        if setup.handler.level > logging.INFO or setup.handler.filters:
            return None
        logger: logging.Logger | None = self._std
        while logger is not None and logger is not self._root:
            if logger.handlers or not logger.propagate:
                return None
            logger = logger.parent
        return setup

    @staticmethod
    def prepare(event: str, **fields: Any) -> LogLine:
        if _OWN_KEYS.intersection(fields):  # structlog overwrites them in place: its way
            return LogLine(event, fields, b"")
        redacted = redact_event(None, "info", {**fields, "event": event})
        return LogLine(event, fields, orjson.dumps(redacted, default=repr)[1:-1])

    def info(self, event: str, **fields: Any) -> None:
        if self._std.isEnabledFor(logging.INFO):
            self.write(self.prepare(event, **fields))

    def write(self, *lines: LogLine) -> None:
        """Write prepared lines at level info, in order, in one write with any others pending."""
        if not lines or not self._std.isEnabledFor(logging.INFO):
            return
        setup = self._setup()
        if (
            setup is None
            or not all(line.rendered for line in lines)
            or structlog.contextvars.get_contextvars()
        ):
            self.flush()  # what was batched before goes first
            for line in lines:
                self._fallback.info(line.event, **line.fields)
            return
        if self._pending_setup is not setup:
            self.flush()  # reconfigured: earlier lines go where they were meant to
        # The members the pipeline adds, in its order (level, logger, timestamp, service): one
        # timestamp for the lines of one call, the rest rendered once per setup.
        head, service_end, plain_end = self._tails(setup)
        stamp = _utc_now_iso().encode()
        for line in lines:
            end = plain_end if service_end is None or "service" in line.fields else service_end
            text = b"{" + line.rendered + head + stamp + end
            self._pending.append(text)
            self._pending_bytes += len(text)
        self._pending_setup = setup
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to flush later: write now
            self.flush()
            return
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(FLUSH_DELAY, self.flush)

    def _tails(self, setup: _JsonSetup) -> tuple[bytes, bytes | None, bytes]:
        if self._tails_for is not setup:
            self._tails_for = setup
            self._tails_cache = (
                b',"level":"info","logger":' + orjson.dumps(self.name) + b',"timestamp":"',
                None
                if setup.service is None  # else added as a default, as `_add_fields` does
                else b'","service":' + orjson.dumps(setup.service) + b"}\n",
                b'"}\n',
            )
        return self._tails_cache

    def flush(self) -> None:
        """Write every pending line now, in one write to the stream (one system call)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        setup, texts = self._pending_setup, self._pending
        if setup is None or not texts:
            return
        self._pending, self._pending_bytes, self._pending_setup = [], 0, None
        setup.handler.acquire()
        try:
            setup.stream.write(b"".join(texts).decode())
            setup.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break the caller
            pass
        finally:
            setup.handler.release()
