"""Structured logs: one JSON object per line, with the correlation id of the work at hand."""

from __future__ import annotations

import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id_var.get()
        if cid:
            entry["correlation_id"] = cid
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()

    def formatException(self, ei: Any) -> str:
        """The traceback, with every pydantic validation error told without its input (its
        ``str`` quotes ``input_value=...``, which may be a client's personal data: D-04)."""
        exc = ei[1]
        if not isinstance(exc, BaseException):
            return super().formatException(ei)
        return format_exception_without_inputs(exc)


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def describe_error(exc: BaseException) -> str:
    """A one-line description of ``exc`` fit for a log line or a dead-letter reason: a
    ValidationError names its fields and error types, never the input (D-04)."""
    if isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {_validation_summary(exc)}"
    return repr(exc)


def _validation_summary(exc: ValidationError) -> str:
    fields = ", ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'} ({e['type']})"
        for e in exc.errors(include_input=False)
    )
    return f"{exc.error_count()} validation error(s) for {exc.title} at: {fields}"


def format_exception_without_inputs(exc: BaseException) -> str:
    """Like ``traceback.format_exception`` with its chain, each ValidationError replaced by an
    input-free summary. Reads the exceptions, never changes them."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    separator = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, separator))
        if current.__cause__ is not None:
            current, separator = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, separator = current.__context__, _CONTEXT
        else:
            current = None
    text: list[str] = []
    for item, separator_after in reversed(chain):
        shown: BaseException = item
        if isinstance(item, ValidationError):
            shown = _ScrubbedValidationError(_validation_summary(item))
        text.extend(traceback.format_exception(type(shown), shown, item.__traceback__, chain=False))
        text.append(separator_after)
    return "".join(text).rstrip("\n")


class _ScrubbedValidationError(ValueError):
    """Stands in for a pydantic ValidationError in a logged traceback."""


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
