"""Bounded values: what the append-only stores may hold (docs/input-validation.md).

Everything here is checked where a value enters (HTTP bodies and parameters, Kafka messages,
rows read back from an event store), because nothing written to an event store, a topic or the
audit ledger can be corrected later:

* :data:`Instant`: an RFC 3339 *string* with an offset (a number is not a time), at most
  microsecond precision, an offset within ±14:00, inside :data:`EARLIEST` .. :data:`LATEST`
  (exclusive), the window in which Python ``datetime`` and PostgreSQL ``timestamptz`` hold the
  same instant and round-trip it exactly, whatever offset it is shown in;
* :func:`clean_text`: free text without NUL, other control characters (tab, line feed and
  carriage return excepted) or lone surrogates (they cannot be stored as UTF-8);
* :func:`clean_token`: identifiers and codes, additionally without format characters (bidi
  overrides, zero-width joiners and spaces) and separators, so what a reader sees is what is
  stored;
* :data:`OpaqueToken`: correlation and causation ids: a bounded alphabet, so no free text (and
  no personal detail written into it) travels in the envelope.

The checks are validators, not JSON Schema keywords, so the published schemas keep their shape.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX

__all__ = [
    "EARLIEST",
    "IDENTIFIER_PATTERN",
    "LATEST",
    "MAX_OFFSET",
    "MAX_SAFE_INTEGER",
    "MAX_SEALED_LENGTH",
    "MAX_STREAM_VERSION",
    "OPAQUE_ID_PATTERN",
    "STORED",
    "Instant",
    "OpaqueToken",
    "Sealable",
    "bad_text_character",
    "bad_token_character",
    "check_instant",
    "clean_text",
    "clean_token",
]

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
"""The first instant accepted (inclusive)."""
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""The first instant refused: shown in any offset up to ±14:00, every accepted instant keeps a
four-digit year, so Python can convert it and PostgreSQL stores it as a finite timestamp."""
MAX_OFFSET = timedelta(hours=14)
"""The widest UTC offset in use anywhere (UTC+14:00, Line Islands; UTC-12:00 the other end)."""
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader (JavaScript included) holds exactly; ledger positions
and tree sizes are bounded by it (PostgreSQL ``bigint`` holds more)."""
MAX_STREAM_VERSION = 2**31 - 1
"""A stream's version is a PostgreSQL ``integer``."""

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_NAIVE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$")
_TIME_HINT = "an RFC 3339 date-time string with an offset, e.g. 2026-11-22T09:00:00+08:00"

OPAQUE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:@\-]+$"
"""The pattern of the envelope's ``Identifier`` (ids of clients, branches, staff, ...)."""


def check_instant(value: datetime) -> datetime:
    """``value`` (aware) if it lies in the window and its offset is one in use; else a
    validation error (``timezone_aware``, ``datetime_offset`` or ``datetime_window``)."""
    offset = value.utcoffset()
    if offset is None:
        raise PydanticCustomError("timezone_aware", f"a time must carry an offset: {_TIME_HINT}")
    if abs(offset) > MAX_OFFSET:
        raise PydanticCustomError("datetime_offset", "the offset must lie within -14:00..+14:00")
    if not EARLIEST <= value < LATEST:
        raise PydanticCustomError(
            "datetime_window",
            f"a time must lie in {EARLIEST.year}-01-01..{LATEST.year - 1}-12-31 (UTC), "
            "the window the stores represent exactly",
        )
    return value


def _instant(value: Any) -> datetime:
    plain = type(value) is str  # a subclass of str has an equality of its own: never kept
    if plain:
        known = _INSTANTS.get(value)
        if known is not None:
            return known
    elif isinstance(value, datetime):  # built by code, not parsed from input
        return check_instant(value)
    elif not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type", f"must be {_TIME_HINT}, not a {type(value).__name__}"
        )
    if not _RFC3339.match(value):
        # the two patterns exclude each other (one ends with an offset, the other without):
        # asked only of a string that is not RFC 3339, to tell why (#12: one match, not two,
        # for every instant of every event)
        if _NAIVE.match(value):
            raise PydanticCustomError(
                "timezone_aware", f"a time must carry an offset: {_TIME_HINT}"
            )
        raise PydanticCustomError("datetime_format", f"must be {_TIME_HINT}")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError(
            "datetime_parsing", f"not a valid date and time: must be {_TIME_HINT}"
        ) from None
    checked = check_instant(parsed)  # a refused text raises: it is never kept
    if plain:
        if len(_INSTANTS) >= _INSTANTS_KEPT:
            _INSTANTS.clear()  # bounded; the texts in use come back at once
        _INSTANTS[value] = checked
    return checked


# The instant of a text is a function of the text alone (its format, offset and window: no
# clock), and a datetime is immutable, so the instant of a text seen lately is taken from here
# instead of parsed again (#12: a batch's items, and the events a consumer reads, often share
# one text; the parse is a match, an upper-casing, a replace and ``fromisoformat``). Few are
# kept, and the parse stays inline: a text seen once costs a lookup and an insert more, not a
# call. tests/unit/events/test_instant_parsed_once.py holds every outcome to the parse alone.
_INSTANTS_KEPT = 64
_INSTANTS: dict[str, datetime] = {}


Instant = Annotated[AwareDatetime, BeforeValidator(_instant)]
"""A point in time as every edge accepts it (see the module's docstring)."""


# One regular expression search instead of a Python loop over the characters: these checks
# run on every string of every request body and event (the per-character loop was several
# per cent of intake's CPU, #12).
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_ASCII_TOKEN = re.compile("[\x00-\x20\x7f]")


def bad_text_character(text: str) -> str | None:
    """The first character free text may not hold, or None: NUL and other C0 controls but
    tab, line feed and carriage return; DEL and the C1 controls; lone surrogates."""
    found = _BAD_TEXT.search(text)
    return None if found is None else found.group()


def bad_token_character(text: str) -> str | None:
    """The first character an identifier or code may not hold, or None: controls, format
    characters (bidi, zero-width), separators and unassigned or private-use code points."""
    if text.isascii():  # the usual case: in ASCII, categories C and Z are controls and space
        found = _BAD_ASCII_TOKEN.search(text)
        return None if found is None else found.group()
    for char in text:
        if unicodedata.category(char)[0] in "CZ":
            return char
    return bad_text_character(text)


def _describe(char: str) -> str:
    return f"U+{ord(char):04X}"


def _refuse_reserved(text: str) -> None:
    if SEALED_PREFIX in text:
        raise PydanticCustomError(
            "reserved_prefix",
            f"{SEALED_PREFIX!r} is reserved for values Branchline sealed itself",
        )


def clean_text(text: str) -> str:
    """AfterValidator of free text: NUL, controls, lone surrogates and the reserved prefix of
    sealed values are refused."""
    bad = bad_text_character(text)
    if bad is not None:
        raise PydanticCustomError(
            "control_character", f"control character {_describe(bad)} is not allowed in text"
        )
    _refuse_reserved(text)
    return text


def clean_token(text: str) -> str:
    """AfterValidator of identifiers and codes: controls, format and separator characters are
    refused (a bidi override or a zero-width space would make two ids look the same)."""
    bad = bad_token_character(text)
    if bad is not None:
        raise PydanticCustomError(
            "control_character", f"character {_describe(bad)} is not allowed in an identifier"
        )
    _refuse_reserved(text)
    return text


STORED = "stored"
"""Validation context key: the data comes from Branchline's own stores or topics, where the
personal values are sealed (``parse_payload(..., stored=True)``)."""
MAX_SEALED_LENGTH = 65_536


def _sealable(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """A sealed value stands for the clear one in stored data: the limits of the clear text do
    not apply to its ciphertext (issue #9 finding 4). In submitted data it is refused."""
    if isinstance(value, str) and SEALED_PREFIX in value:
        if not (isinstance(info.context, dict) and info.context.get(STORED)):
            _refuse_reserved(value)
        if (
            not value.startswith(SEALED_PREFIX)
            or len(value) > MAX_SEALED_LENGTH
            or bad_token_character(value) is not None
        ):
            raise PydanticCustomError("sealed_value", "not a well-formed sealed value")
        return value
    return handler(value)


Sealable = WrapValidator(_sealable)
"""On every type a personal path may hold: read back sealed, submitted clear."""


OpaqueToken = Annotated[
    str, StringConstraints(pattern=OPAQUE_ID_PATTERN), AfterValidator(clean_token)
]
"""A correlation or causation id: ASCII letters, digits and ``. _ : -``, at most 128."""

CleanText = AfterValidator(clean_text)
CleanToken = AfterValidator(clean_token)
