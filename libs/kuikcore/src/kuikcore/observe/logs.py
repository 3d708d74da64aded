"""One logging setup for every kuik process: structlog in front, the stdlib routed through it.

JSON lines when the output is not a terminal (what log collectors want), a readable console
rendering on a TTY. Third-party libraries that log through `logging` (aiohttp, redis, the Kubernetes
client) end up in the same stream, with the same fields, and through the same secret redaction.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from kuikcore.observe.redact import redact_event

__all__ = ["LOG_LEVELS", "configure_logging", "get_logger"]

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_HANDLER_MARK = "_kuik_handler"


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
