"""Structured logs: one JSON object per line, with the correlation id of the work at hand."""

from __future__ import annotations

import logging
import re
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
        """The traceback, with every pydantic validation error and database error told
        without its input (a ValidationError's ``str`` quotes ``input_value=...``, a database
        error's the refused value; either may be a client's personal data: D-04)."""
        exc = ei[1]
        if not isinstance(exc, BaseException):
            return super().formatException(ei)
        return format_exception_without_inputs(exc)


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def describe_error(exc: BaseException) -> str:
    """A one-line description of ``exc`` fit for a log line or a dead-letter reason: a
    ValidationError names its fields and error types, a database error its SQLSTATE and the
    objects it names, never the input (D-04)."""
    if isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {_validation_summary(exc)}"
    if _is_database_error(exc):
        return f"{type(exc).__name__}: {_database_summary(exc)}"
    return repr(exc)


def _is_database_error(exc: BaseException) -> bool:
    """An error PostgreSQL (or asyncpg on its behalf) raised: told by its SQLSTATE, so this
    module needs no database driver (the domain code that logs must not import one)."""
    return type(exc).__module__.startswith("asyncpg.") and isinstance(
        getattr(exc, "sqlstate", None), str
    )


_QUERY_ARGUMENT = re.compile(r"query argument (\$\d+)")
_QUOTED = re.compile(r'"[^"]*"')
"""PostgreSQL quotes names and values alike ('value "..." is out of range for type integer'):
every quoted part is left out; the names that matter are told from the error's fields."""


def _database_summary(exc: BaseException) -> str:
    """The SQLSTATE, the constraint, column and table the server named, and what its message
    says before the first colon, without its quoted parts. PostgreSQL quotes the refused value
    after a colon ('invalid input syntax for type uuid: "..."', asyncpg's 'invalid input for
    query argument $1: ...'), in quotes ('value "..." is out of range') and in its DETAIL
    ('Failing row contains (...)', 'Key (id)=(...)'), which is never taken: any of them may be
    a client's personal data (D-04)."""
    message = str(exc).split("\n", 1)[0]  # asyncpg adds the DETAIL on lines of their own
    argument = _QUERY_ARGUMENT.search(message)
    said = _QUOTED.sub('"..."', message.split(":", 1)[0]).strip() or "no message"
    parts = [said, f"SQLSTATE {exc.sqlstate}"]  # type: ignore[attr-defined]
    if argument is not None:
        parts.append(f"argument {argument.group(1)}")
    for attribute in ("constraint_name", "column_name", "table_name"):
        named = getattr(exc, attribute, None)
        if isinstance(named, str) and named:
            parts.append(f"{attribute.removesuffix('_name')} {named}")
    return "; ".join(parts)


def _validation_summary(exc: ValidationError) -> str:
    fields = ", ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'} ({e['type']})"
        for e in exc.errors(include_input=False)
    )
    return f"{exc.error_count()} validation error(s) for {exc.title} at: {fields}"


def format_exception_without_inputs(exc: BaseException) -> str:
    """Like ``traceback.format_exception`` with its chain, each ValidationError and database
    error replaced by an input-free summary. Reads the exceptions, never changes them."""
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
        elif _is_database_error(item):
            shown = _ScrubbedDatabaseError(describe_error(item))
        text.extend(traceback.format_exception(type(shown), shown, item.__traceback__, chain=False))
        text.append(separator_after)
    return "".join(text).rstrip("\n")


class _ScrubbedValidationError(ValueError):
    """Stands in for a pydantic ValidationError in a logged traceback."""


class _ScrubbedDatabaseError(Exception):
    """Stands in for a database error, whose message may quote a refused value, in a logged
    traceback."""


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
