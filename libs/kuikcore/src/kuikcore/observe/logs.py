"""One logging setup for every kuik process: structlog in front, the stdlib routed through it.

JSON lines when the output is not a terminal (what log collectors want), a readable console
rendering on a TTY. Third-party libraries that log through `logging` (aiohttp, redis, the Kubernetes
client) end up in the same stream, with the same fields, and through the same secret redaction.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
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
_TIMESTAMPER = structlog.processors.TimeStamper(fmt="iso", utc=True)
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


class HotLogger:
    """A logger for a line written on a hot path (the webhook's line per rerouted container).

    The same JSON line as `get_logger(name)` would write (same fields in the same order, the
    same secret redaction), without the stdlib record, frame walking and formatter copies; and a
    line can be prepared once (`prepare`: redacted and rendered) and written again and again
    (`write`: only the timestamp is new). Whenever the line could go anywhere else than the one
    kuik handler (console rendering, another handler attached as pytest's caplog does, context
    variables bound), it goes the ordinary structlog way, so what reaches a handler never
    differs.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._std = logging.getLogger(name)
        self._root = logging.getLogger()
        self._fallback = get_logger(name)

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
        """Write prepared lines at level info, in one write to the stream (one system call)."""
        if not lines or not self._std.isEnabledFor(logging.INFO):
            return
        setup = self._setup()
        if (
            setup is None
            or not all(line.rendered for line in lines)
            or structlog.contextvars.get_contextvars()
        ):
            for line in lines:
                self._fallback.info(line.event, **line.fields)
            return
        texts = []
        for line in lines:
            tail: dict[str, Any] = {"level": "info", "logger": self.name}
            _TIMESTAMPER(None, "info", tail)
            if setup.service is not None and "service" not in line.fields:
                tail["service"] = setup.service  # added as a default, as `_add_fields` does
            texts.append(b"{" + line.rendered + b"," + orjson.dumps(tail)[1:] + b"\n")
        setup.handler.acquire()
        try:
            setup.stream.write(b"".join(texts).decode())
            setup.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break the caller
            pass
        finally:
            setup.handler.release()
