"""structlog set-up: quiet human-readable warnings by default, every event as JSON lines on request.

Logs go to stderr so that ``--json`` output on stdout stays machine-readable. API keys never reach a
log event: backends keep them in `SecretStr`, events carry only ids, counts and error messages, and
every text value is scrubbed of registered keys and ``Bearer`` tokens (a server may echo them back).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from fanout.agents.secrets import scrub

__all__ = ["configure_logging", "ensure_logging", "scrub_event"]


class _StderrLogger:
    """Writes each event to whatever ``sys.stderr`` is at that moment (it may be replaced later)."""

    def msg(self, message: str) -> None:
        """Write one rendered event."""
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = msg


def scrub_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """A structlog processor: no text value of an event carries an API key."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub(value)
    return event


def configure_logging(
    *, json_lines: bool = False, level: str = "warning", stream: TextIO | None = None
) -> None:
    """Route fanout's events to `stream` (stderr), as JSON lines or as console text."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=(
            structlog.PrintLoggerFactory(stream)
            if stream is not None
            else (lambda *_: _StderrLogger())
        ),
        cache_logger_on_first_use=False,
    )


def ensure_logging() -> None:
    """Unless the application configured structlog itself, log warnings only, to stderr.

    structlog's own default prints every event to stdout, which would bury a library user's output.
    """
    if not structlog.is_configured():
        configure_logging()
