"""Logging configuration for the services' ``main()``: one JSON object per line, or plain text."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service_common.config import Variables, read_choice

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the ``extra`` fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extra_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


def configure_logging(level: str, log_format: str) -> None:
    """Sends every logger's records to stderr in ``log_format`` ("json" or "text") at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


_LEVELS = ("debug", "info", "warning", "error")
LOG_VARIABLES = Variables()
LOG_LEVEL = LOG_VARIABLES.declare("LOG_LEVEL", "info", "debug, info, warning or error")
LOG_FORMAT = LOG_VARIABLES.declare("LOG_FORMAT", "json", "json (one object a line) or text")


@dataclass(frozen=True)
class LogSettings:
    """``LOG_LEVEL`` (default info) and ``LOG_FORMAT`` (json, the default, or text)."""

    level: str = "info"
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LogSettings:
        return cls(
            level=read_choice(env, LOG_LEVEL, _LEVELS),
            log_format=read_choice(env, LOG_FORMAT, ("json", "text")),
        )

    def apply(self) -> None:
        """Configures logging for the whole process; called once, from ``main()``."""
        configure_logging(self.level, self.log_format)
