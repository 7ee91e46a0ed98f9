"""Structured logs: one JSON object per line, carrying the request and generation ids."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
generation_id_var: ContextVar[str | None] = ContextVar("generation_id", default=None)

# A key in a URL query or an Authorization header, wherever a library might quote one.
_SECRET = re.compile(r"(?i)(api_key=|bearer\s+)[^\s&\"',;]+")


def redact(text: str) -> str:
    """``text`` with API keys (``api_key=`` query values, bearer tokens) masked."""
    lowered = text.lower()
    if "api_key" not in lowered and "bearer" not in lowered:
        return text  # the common case: no regex work
    return _SECRET.sub(r"\1[redacted]", text)


# "color_message" is uvicorn's ANSI-coloured copy of the message.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON with time, level, logger, message, ids and extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if (request_id := request_id_var.get()) is not None:
            payload["request_id"] = request_id
        if (generation_id := generation_id_var.get()) is not None:
            payload["generation_id"] = generation_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                if not isinstance(value, (int, float, bool)):
                    value = redact(str(value))
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Plain text lines, with API keys masked as in the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Send every logger's records to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
