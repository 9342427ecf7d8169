"""Strict input before any route sees it (docs/input-validation.md), as pure ASGI middleware.

What a pydantic model cannot see, because the JSON parser has already lost it or because it
holds for every field of every service alike:

* duplicate keys in a JSON object (a parser keeps the last, a human reader of the body sees
  the first: the stored event would not be the one that was read) → 422 naming the key;
* ``NaN``, ``Infinity`` and numbers beyond ±(2**53 - 1), integer or not → 422 (I-JSON,
  RFC 7493: the range every JSON reader holds exactly; the audit ledger can record nothing
  else verifiably, docs/audit.md, so no accepted event, nor the record of a refused one, is
  ever refused by it); nesting deeper than :data:`MAX_DEPTH` → 422 (instead of a recursion
  error);
* NUL, other control characters and lone surrogates in any string of the body, key or value
  (tab, line feed and carriage return excepted) → 422 naming the field;
* the reserved prefix of sealed personal values (``bl:pii:v1:``) in any string of the body →
  422: a sealed value is produced by Branchline alone, never taken from a caller, or personal
  data could be smuggled in clear past the sealing (and never shredded);
* control, format (bidi, zero-width) or separator characters in the path or a query
  parameter (they are ids, codes and times; ``%00`` would reach PostgreSQL) → 422.

A body that is not JSON at all is left to the route (400 "Malformed JSON").

The body is parsed once (#12): the document this check parsed is left in the ASGI scope
(:data:`PARSED_BODY`), and routes of :class:`ParsedBodyRoute` take it from there instead of
parsing the bytes again; their models are validated from that document exactly as FastAPI
validates a parsed body (the same models, the same errors).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.bounded import (
    MAX_SAFE_INTEGER,
    bad_text_character,
    bad_token_character,
)
from branchline_shared.field_issues import printable_field
from branchline_shared.http.problems import PROBLEM_JSON, validation_problem

__all__ = [
    "MAX_DEPTH",
    "PARSED_BODY",
    "UNDECIDED",
    "ParsedBodyRoute",
    "StrictInput",
    "body_errors",
    "clean_document",
    "parse_strict_json",
    "plainly_clean",
    "refuse_input",
    "strict_request",
]

PARSED_BODY = "branchline.parsed_body"
"""Scope key of the request body as :class:`StrictInput` parsed and checked it."""

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays a body may have (events nest three levels)."""

UNDECIDED: Any = object()
"""What :func:`clean_document` returns for a body it leaves to the full check."""


class _Refused(ValueError):
    def __init__(self, field: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.error = {"field": field, "message": message, "type": kind}


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) == len(pairs):  # the usual case, found without a Python loop
        return document
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            shown = printable_field(key)
            raise _Refused(shown, f"duplicate key {shown!r} in a JSON object", "duplicate_key")
        seen.add(key)
    return document


def _constant(name: str) -> Any:
    raise _Refused("body", f"{name} is not a JSON number", "not_a_number")


class _OutOfRange(ValueError):
    """A number beyond ±(2**53 - 1): :func:`parse_strict_json` names its field."""


def _out_of_range_field(body: bytes) -> str:
    """The path of the first number of ``body`` beyond ±(2**53 - 1) (only on a refusal: the
    hooks that found it do not know where they are). ``body`` if it cannot be told."""
    try:
        document = json.loads(body, parse_constant=float)
    except (ValueError, RecursionError):  # an integer too long to convert, too deep
        return "body"
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, (*path, str(i))) for i, v in reversed(list(enumerate(node))))
        elif (
            isinstance(node, int | float)
            and not isinstance(node, bool)
            and not -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER
        ):
            return printable_field(".".join(path)) or "body"
    return "body"


def _float(text: str) -> float:
    value = float(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # also NaN and the infinities
        raise _OutOfRange
    return value


def _int(text: str) -> int:
    # 2**53 - 1 has 16 digits: shorter texts are in range without converting anything.
    if len(text) > 15 and (len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_SAFE_INTEGER):
        raise _OutOfRange
    return int(text)


def parse_strict_json(body: bytes) -> Any:
    """The parsed document; ``ValueError`` for malformed JSON (left to the route);
    :class:`_Refused` for a duplicate key or a number beyond ±(2**53 - 1)."""
    try:
        return json.loads(
            body,
            object_pairs_hook=_pairs,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
        )
    except RecursionError:
        raise _Refused("body", f"nested deeper than {MAX_DEPTH} levels", "too_deep") from None
    except _OutOfRange:
        # Without the number: it may be personal data (D-04), and the caller has it.
        raise _Refused(
            _out_of_range_field(body),
            f"a number out of range: JSON numbers must lie within ±{MAX_SAFE_INTEGER} "
            "(2^53 - 1), the range every JSON reader and the audit ledger hold exactly; "
            "send larger amounts as strings",
            "number_out_of_range",
        ) from None


# A byte that could make a decoded string hold a refused character: C0 controls but tab, line
# feed and carriage return (raw ones are refused by the parser inside strings anyway), DEL,
# every non-ASCII byte and the backslash, which starts every escape (``\u0000``, ``\b``).
_NOT_PLAIN = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff\\]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_INNERMOST = re.compile(rb"\{\}|\[\]")
_SEALED_PREFIX = SEALED_PREFIX.encode()


def plainly_clean(body: bytes) -> bool:
    """True when the parsed ``body`` certainly has no :func:`body_errors`, judged from its
    bytes in a few passes of compiled regular expressions instead of a Python walk over every
    string (#12: the walk was about a tenth of a batch's CPU). Holds for a body that parsed
    as JSON, is printable ASCII without a backslash (so every character of every decoded
    string is a byte of the body as it is: no control character, no surrogate, and the
    reserved prefix only where the bytes hold it) and nests at most :data:`MAX_DEPTH` levels;
    anything else is left to :func:`body_errors`, which decides (and names the field)."""
    return _plain(body) and _nested_within_bounds(_outside_strings(body))


def _plain(body: bytes) -> bool:
    """Printable ASCII (tab and line ends allowed) without a backslash or the reserved
    prefix: every string of the body is its bytes between two quotes, as they are."""
    return _NOT_PLAIN.search(body) is None and _SEALED_PREFIX not in body


def _outside_strings(body: bytes) -> bytes:
    """What lies outside the strings of a :func:`_plain` body: without escapes every quote
    opens or closes a string, so the even parts between quotes."""
    return b"".join(body.split(b'"')[::2])


def _nested_within_bounds(outside: bytes) -> bool:
    """Of a valid document's text outside strings, its brackets are left, properly nested.
    Each pass removes the innermost pairs, so the passes needed are the deepest nesting."""
    brackets = outside.translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return True
        brackets = _INNERMOST.sub(b"", brackets)
    return not brackets


# A number orjson is not trusted to read exactly as :func:`parse_strict_json` does, or that
# could lie beyond ±(2**53 - 1): an exponent, or 16 or more digits and points in a row.
# Without them a number has at most 15 digits: below 10**15 and exactly the nearest double.
_LONG_OR_EXPONENT = re.compile(rb"[0-9.]{16}|[0-9][eE]")


def clean_document(body: bytes) -> Any:
    """The document of a body that is certainly clean, parsed by orjson (#12: about a fifth
    of the stdlib parser's time with the hooks), or :data:`UNDECIDED`, and then the body goes
    the full way (:func:`parse_strict_json`, :func:`body_errors`), which decides and names
    the field. A document is returned only where that way would return the same document
    and no error: a :func:`plainly_clean` body without a number of
    :data:`_LONG_OR_EXPONENT`, that orjson parses (it refuses ``NaN``, the infinities,
    anything malformed), and in which no key was dropped as a duplicate (the strings counted
    in the body and in the document dumped again: the body has no escapes, so every string
    dumps as it was sent, quotes and all)."""
    if not _plain(body):
        return UNDECIDED
    outside = _outside_strings(body)
    if _LONG_OR_EXPONENT.search(outside) is not None:
        return UNDECIDED
    # No deeper than it has brackets that open: the passes only for a body with many.
    opened = outside.count(b"{") + outside.count(b"[")
    if opened > MAX_DEPTH and not _nested_within_bounds(outside):
        return UNDECIDED
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return UNDECIDED
    if orjson.dumps(document).count(b'"') != body.count(b'"'):
        return UNDECIDED  # a duplicate key: the full way names it
    return document


def body_errors(document: Any) -> list[dict[str, Any]]:
    """Every string of ``document`` (keys and values) checked; errors name the field path.
    Iterative, so a deep document cannot exhaust the stack."""
    errors: list[dict[str, Any]] = []
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack and len(errors) < 20:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            errors.append(_error(path, f"nested deeper than {MAX_DEPTH} levels", "too_deep"))
            break
        if isinstance(node, dict):
            for key, value in node.items():
                child = (*path, key)
                _check_string(key, child, errors, what="key")
                stack.append((value, child))
        elif isinstance(node, list):
            stack.extend((value, (*path, str(i))) for i, value in enumerate(node))
        elif isinstance(node, str):
            _check_string(node, path, errors, what="value")
    return errors


def _error(path: tuple[str, ...], message: str, kind: str) -> dict[str, Any]:
    return {"field": printable_field(".".join(path)) or "body", "message": message, "type": kind}


def _check_string(
    text: str, path: tuple[str, ...], errors: list[dict[str, Any]], what: str
) -> None:
    bad = bad_text_character(text)
    if bad is not None:
        errors.append(
            _error(path, f"control character U+{ord(bad):04X} in a {what}", "control_character")
        )
    elif SEALED_PREFIX in text:
        errors.append(
            _error(
                path,
                f"{SEALED_PREFIX!r} is reserved for values Branchline sealed itself",
                "reserved_prefix",
            )
        )


def _query_errors(scope: Scope) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    try:
        path = unquote(raw_path.decode("ascii"), errors="strict")
    except UnicodeError:
        return [_error(("path",), "the path is not valid UTF-8", "invalid_encoding")]
    bad = bad_token_character(path.replace(" ", "x"))
    if bad is not None:
        errors.append(
            _error(("path",), f"character U+{ord(bad):04X} in the path", "control_character")
        )
    query = scope.get("query_string", b"")
    if query:
        try:
            pairs = parse_qsl(
                query.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=100
            )
        except (UnicodeError, ValueError) as exc:
            return [*errors, _error(("query",), f"unreadable query string: {exc}", "invalid")]
        for name, value in pairs:
            for text in (name, value):
                bad = bad_token_character(text.replace(" ", "x"))
                if bad is not None:
                    errors.append(
                        _error(
                            ("query", printable_field(name, 64)),
                            f"character U+{ord(bad):04X} is not allowed in a parameter",
                            "control_character",
                        )
                    )
                    break
    return errors


def _is_json(scope: Scope) -> bool:
    content_type = b""
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
    return content_type in (b"", b"application/json") or content_type.endswith(b"+json")


class StrictInput:
    """Refuses what no route may receive (see the module docstring) with a 422 problem+json."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors, receive = await strict_request(scope, receive)
        if errors:
            await refuse_input(errors, send)
            return
        await self.app(scope, receive, send)


async def strict_request(scope: Scope, receive: Receive) -> tuple[list[dict[str, Any]], Receive]:
    """The request's strict-input errors (none: it may go on), and the ``receive`` the app is
    to read the body from (a JSON body was read here, and is replayed). A body found clean
    is left parsed in the scope (:data:`PARSED_BODY`). Shared by :class:`StrictInput` and
    the services' one edge middleware (``edge.ServiceEdge``)."""
    errors = _query_errors(scope)
    if errors:
        return errors, receive
    if scope.get("method") not in ("POST", "PUT", "PATCH") or not _is_json(scope):
        return [], receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return [], _replay([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if body.strip():
        document = clean_document(body)
        if document is not UNDECIDED:
            scope[PARSED_BODY] = document
            return [], _replay([{"type": "http.request", "body": body}], receive)
        try:
            document = parse_strict_json(body)
        except _Refused as refused:
            return [refused.error], receive
        except ValueError:
            document = None  # not JSON: the route answers 400 with the parser's position
        else:
            errors = [] if plainly_clean(body) else body_errors(document)
            if errors:
                return errors, receive
            scope[PARSED_BODY] = document
    return [], _replay([{"type": "http.request", "body": body}], receive)


class _ParsedBodyRequest(Request):
    """A request whose JSON is the document :class:`StrictInput` already parsed, if any."""

    async def json(self) -> Any:
        if not hasattr(self, "_json") and PARSED_BODY in self.scope:
            self._json = self.scope[PARSED_BODY]
        return await super().json()


class ParsedBodyRoute(APIRoute):
    """A route that validates its body model from the document :class:`StrictInput` parsed
    (the bytes are parsed once per request, not twice); without it, as any route."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed_once(request: Request) -> Response:
            return await handler(_ParsedBodyRequest(request.scope, request.receive))

        return parsed_once


def _replay(messages: list[Message], then: Receive) -> Receive:
    """The buffered ``messages`` once, then the connection's own ``receive`` (which reports
    the client's disconnect when it happens)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return replayed


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


async def refuse_input(errors: list[dict[str, Any]], send: Send) -> None:
    problem = validation_problem(errors)
    response = JSONResponse(problem.body(), status_code=422, media_type=PROBLEM_JSON)
    await response({"type": "http"}, _disconnected, send)
