"""fanout's log events: stdlib loggers under ``fanout``, silent until the CLI or the application asks.

A library must not decide how its host process logs. fanout's modules log through
``logging.getLogger("fanout.…")``; the ``fanout`` logger carries a `logging.NullHandler` (attached in
``fanout/__init__.py``), and nothing here touches the root logger or structlog's global
configuration. An application that configures `logging` sees fanout's warnings like any library's, as
one ``event key=value …`` line each. `configure_logging` (what the CLI calls; an application may call
it too) instead gives the ``fanout`` logger its own handler that renders every event with structlog,
as console text or as JSON lines, on stderr.

API keys never reach an event: backends keep them in `SecretStr`, events carry only ids, counts,
timings and error messages, and every text value (nested ones too) is scrubbed of credentials (a
server may echo them back in an error; see `fanout.agents._secrets`) and has its control characters
shown as escapes, so a server's error or a file name cannot rewrite the terminal a log is read on.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from ._safe_text import visible
from ._secrets import scrub_value

__all__ = ["LOGGER_NAME", "LogLevel", "configure_logging", "log_event"]

LOGGER_NAME = "fanout"
"""The logger every fanout module logs under (``fanout.agents.openai``, ``fanout.orchestrator.…``)."""

LogLevel = Literal["debug", "info", "warning", "error", "critical"]

_EVENT = "fanout_event"
_FIELDS = "fanout_fields"


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log `event` with structured `fields`.

    A plain `logging` handler prints ``event key=value …``; the handler `configure_logging` installs
    renders the event name and each field as separate keys (JSON lines with ``--log-json``).
    """
    if not logger.isEnabledFor(level):
        return
    fields = {key: _safe(scrub_value(v)) for key, v in fields.items()}
    text = " ".join([event, *(f"{key}={_plain(value)}" for key, value in fields.items())])
    logger.log(level, "%s", text, extra={_EVENT: event, _FIELDS: fields})


def _safe(value: Any) -> Any:
    """A field value with every string in it scrubbed of secrets and its controls made visible."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v) for v in value]
    return value


def _plain(value: Any) -> str:
    """A field value for a plain ``key=value`` line: quoted when it holds spaces (logfmt)."""
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


def _event_fields(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: an event logged by `log_event` becomes its name plus one key per field."""
    record = event_dict.get("_record")
    event = getattr(record, _EVENT, None)
    if event is not None:
        event_dict["event"] = event
        event_dict.update(getattr(record, _FIELDS, {}))
    return event_dict


class _FanoutHandler(logging.Handler):
    """Writes each rendered event to `stream`, or to whatever ``sys.stderr`` is at that moment."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write one rendered record."""
        try:
            stream = self._stream or sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(
    *, json_lines: bool = False, level: LogLevel = "warning", stream: TextIO | None = None
) -> None:
    """Render fanout's events (and only fanout's) with structlog on `stream` (default stderr).

    Replaces the handler an earlier call installed; the ``fanout`` logger then stops propagating, so
    an application's own root handlers do not print the same event twice. Logs go to stderr so that
    ``--json`` output on stdout stays machine-readable.
    """
    target = stream or sys.stderr
    # Colours only on a terminal (and not under NO_COLOR): a log file or pipe gets plain text.
    colors = target.isatty() and not os.environ.get("NO_COLOR")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    handler = _FanoutHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _event_fields,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, _FanoutHandler)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
