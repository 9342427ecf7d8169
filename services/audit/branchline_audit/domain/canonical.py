"""Canonical bytes and the SHA-256 hash chain of the audit ledger (ADR-0006).

Why a precise definition: a regulator's auditor must recompute every hash from an export with
nothing but this text, in any language. The definition, version 1:

**Canonical bytes of an entry.** The RFC 8785 (JSON Canonicalization Scheme, "JCS") encoding,
UTF-8, of this JSON object and nothing else::

    {"appended_at": <string>, "event": <object>, "format": "branchline.audit.entry.v1",
     "position": <integer>}

- ``position``: the entry's ledger position, 1, 2, 3, ... without gaps (JSON number; at most
  2**53 - 1, the integer range JCS allows).
- ``event``: the recorded event exactly as the ledger stores it, as a JSON object (the envelope
  of docs/api.md with ``data``; personal fields in their encrypted form, so that crypto-shredding a
  client leaves every hash verifiable). It is the JSON *value* that counts: key order and
  whitespace of any stored text do not matter, JCS fixes them. Every number in it, integer or
  not, lies within ±(2**53 - 1) (see **Numbers**).
- ``appended_at``: when the ledger appended the entry, as an RFC 3339 UTC string with exactly
  six fractional digits and a ``Z``, e.g. ``"2024-05-01T09:30:00.000000Z"``
  (:func:`format_appended_at`).
- ``format``: the constant ``"branchline.audit.entry.v1"``; a future definition gets a new value.

With JCS the members appear sorted by key, as above, with no whitespace.

**Chain.** ``hash(p) = SHA-256(prev_hash(p) || canonical_bytes(p))`` where ``||`` is byte
concatenation, ``prev_hash(1)`` is 32 zero bytes and ``prev_hash(p) = hash(p - 1)``. Hashes are
shown as lowercase hex.

**Merkle tree.** Leaf ``i`` (0-based) of the RFC 6962 tree is position ``i + 1`` and its leaf
input is the 32 raw bytes of ``hash(i + 1)`` (see :mod:`.merkle`).

**Stored bytes.** The ledger stores each entry's canonical bytes next to its typed columns
(since migration 004) and re-verification hashes those stored bytes, then checks that they
decode to the entry's position, append time and event (:func:`stored_bytes_problem`): a check
never depends on the event surviving a round trip through jsonb and the typed columns. Entries
written before have no stored bytes and are verified from their content as before. Since
migration 006 (#12) a new entry stores its event only inside these bytes (no ``event``
column): readers take it from them (:func:`stored_event`), the verifier proves it there
(:func:`proven_event_after`).

**Numbers.** JCS writes a number as ECMAScript does: ``1.0`` as ``1``, ``1e16`` as
``10000000000000000``, ``1e300`` as ``1e+300``. An event holding a number beyond ±(2**53 - 1)
therefore has canonical bytes that do not decode to a canonicalisable event (``1e16`` reads
back as an integer JCS refuses) or that a reader holding numbers as doubles or PostgreSQL's
``jsonb`` (``1e+300`` becomes 301 digits) does not give back as written. Such an entry could
never be verified, so :func:`entry_canonical_bytes` refuses the event
(:class:`CanonicalisationError`, naming where the number is, never its value: D-04) and the
ledger appends nothing; the audit consumer dead-letters it with that reason. Nothing is
rounded, rewritten or quoted: the ledger holds an event as recorded, or not at all. Within the
range an integral float such as ``1.0`` is stored as JCS writes it, ``1``: the same JSON
number (RFC 8785 treats numbers as IEEE 754 doubles), and what the event column and every
export hold.

**Types are exact.** Verification compares the event the stored bytes decode to with the
event column as JSON values of the same type (:func:`same_json`): Python's ``1 == 1.0 ==
True`` would let a column rewritten from ``1`` to ``1.0`` or ``true`` pass.

**Pruned entries** (retention, D-11). ``branchline audit prune`` replaces the event of an entry
past its retention period by a marker (:mod:`.records`) and keeps ``position``, ``appended_at``,
``prev_hash`` and ``hash``. Its canonical bytes are then gone, so for a pruned entry the chain
checks only the linkage (``prev_hash`` equals the hash before it); the hash itself stays proven
by the next entry's ``prev_hash``, by the Merkle tree and by every signed checkpoint, and the
prune is itself a ledger entry naming the positions it pruned.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import rfc8785

from branchline_audit.domain.merkle import (
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    AlignedRange,
    CompactRange,
    leaf_hash,
)
from branchline_shared.field_issues import printable_field

ENTRY_FORMAT = "branchline.audit.entry.v1"
GENESIS_PREV_HASH = bytes(HASH_SIZE)
"""``prev_hash`` of position 1."""
MAX_POSITION = 2**53 - 1
"""Largest integer JCS represents exactly (an IEEE 754 double)."""

_APPENDED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


class CanonicalisationError(ValueError):
    """An entry that has no canonical bytes under this definition (and so cannot be chained)."""


def format_appended_at(moment: datetime) -> str:
    """The one string form of an append time that enters the hash, so that the same instant
    read back from PostgreSQL (microsecond precision) always hashes the same."""
    if moment.tzinfo is None:
        raise CanonicalisationError("appended_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_position(position: int) -> None:
    # bool is an int subclass but would serialise as true/false.
    if isinstance(position, bool) or not isinstance(position, int):
        raise CanonicalisationError(f"position must be an int, got {type(position).__name__}")
    if not 1 <= position <= MAX_POSITION:
        raise CanonicalisationError(f"position must be in 1..{MAX_POSITION}, got {position}")


def _check_appended_at(appended_at: str) -> None:
    if not isinstance(appended_at, str) or not _APPENDED_AT.fullmatch(appended_at):
        raise CanonicalisationError(
            "appended_at must look like 2024-05-01T09:30:00.000000Z "
            f"(use format_appended_at), got {appended_at!r}"
        )


def entry_canonical_bytes(position: int, event: Mapping[str, Any], appended_at: str) -> bytes:
    """The bytes the chain hashes for one entry (definition in the module docstring)."""
    _check_position(position)
    _check_appended_at(appended_at)
    if type(event) is not dict and not isinstance(event, Mapping):
        raise CanonicalisationError(f"event must be a JSON object, got {type(event).__name__}")
    plain = dict(event)
    encoded = _jcs_event_bytes(plain)
    if encoded is not None:
        return _entry_head(appended_at) + encoded + _entry_tail(position)
    document: dict[str, Any] = {
        "appended_at": appended_at,
        "event": plain,
        "format": ENTRY_FORMAT,
        "position": position,
    }
    if _orjson_is_jcs(document):
        try:
            return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # (a lone surrogate) the reference implementation says why, below
    problem = _number_problem(plain)
    if problem is not None:
        raise CanonicalisationError(f"event is not canonicalisable JSON: {problem}")
    try:
        canonical: bytes = rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError) as error:
        raise CanonicalisationError(f"event is not canonicalisable JSON: {error}") from error
    return canonical


def entry_encoder(appended_at: str) -> Callable[[int, Mapping[str, Any]], bytes]:
    """:func:`entry_canonical_bytes` for the entries of one append, which share their
    append time: it is checked and its head encoded once, and a plain ``dict`` event is
    encoded without a copy (#12). The same bytes, and the same refusals, for every entry."""
    _check_appended_at(appended_at)
    head = _entry_head(appended_at)

    def encode(position: int, event: Mapping[str, Any]) -> bytes:
        if type(event) is dict and type(position) is int and 1 <= position <= MAX_POSITION:
            # _jcs_event_bytes and _surely_jcs written out: two Python calls fewer per
            # appended entry (#12); the same checks in the same order.
            try:
                encoded = orjson.dumps(event, option=_ORJSON_NATIVE_ONLY)
            except orjson.JSONEncodeError:
                pass
            else:
                if encoded.isascii() and _plain_json(event, _EVENT_NESTING):
                    return head + encoded + _TAIL_START + b"%d}" % position
        return entry_canonical_bytes(position, event, appended_at)

    return encode


_JCS_MAX_INT = 2**53 - 1
_JCS_MAX_DEPTH = 64

# With JCS the document's members come in this order and only the event varies in form, so
# an entry's canonical bytes are head + the event's JCS bytes + tail (the module docstring).
_HEAD_START = b'{"appended_at":"'
_HEAD_END = b'","event":'
_TAIL_START = b',"format":"' + ENTRY_FORMAT.encode() + b'","position":'
_ORJSON_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_ORJSON_NATIVE_ONLY = (
    _ORJSON_SORTED
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _entry_head(appended_at: str) -> bytes:
    return _HEAD_START + appended_at.encode() + _HEAD_END


def _entry_tail(position: int) -> bytes:
    return _TAIL_START + str(position).encode() + b"}"


def _surely_jcs(encoded: bytes, value: dict[str, Any]) -> bool:
    """Whether ``encoded``, orjson's sorted output of ``value``, is provably the JCS text of
    ``value``, by cheaper checks than :func:`_orjson_is_jcs`' walk: every key ASCII (all bytes
    are), and, in one walk (:func:`_plain_json`), nesting within the JCS depth limit as
    :func:`_orjson_is_jcs` counts it and only plain JSON values, no float. Integers beyond
    2**53 were refused by ``OPT_STRICT_INTEGER`` already. False means "not proven", not "not
    JCS": the caller then takes the exact path."""
    return encoded.isascii() and _plain_json(value, _EVENT_NESTING)


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})
_EVENT_NESTING = _JCS_MAX_DEPTH - 2
"""How many levels of objects and arrays an event may hold below itself for
:func:`_orjson_is_jcs` to take its entry's document: the document is at depth 0, the event
at 1, and a container is taken up to depth ``_JCS_MAX_DEPTH - 1``."""


def _plain_json(node: Any, nesting: int) -> bool:
    """``node`` (an object or an array) holds only objects, arrays, strings, integers,
    booleans and null, of exactly those types (no float, no subclass, nothing orjson would
    quietly convert, such as a UUID or a tuple), and objects and arrays at most ``nesting``
    levels below it.

    The nesting is counted in the walk the types need anyway; it replaces counting every
    opening bracket of the encoded bytes (two scans of them per entry, about as costly as the
    walk on an envelope, #12). It takes every event the count took (``n`` containers in all
    nest at most ``n - 1`` levels below the event) and some more, wide but shallow ones: all
    within the depth :func:`_orjson_is_jcs` takes, so the bytes are the same either way."""
    for value in node.values() if type(node) is dict else node:
        kind = type(value)
        if kind in _PLAIN_SCALARS:
            continue
        if (
            (kind is not dict and kind is not list)
            or not nesting
            or not _plain_json(value, nesting - 1)
        ):
            return False
    return True


def _jcs_event_bytes(event: dict[str, Any]) -> bytes | None:
    """The JCS bytes of ``event`` by orjson when provably identical to the reference
    encoding (None: not proven, take the exact path). Non-JSON Python values (times,
    dataclasses, subclasses) make orjson refuse, the rest :func:`_surely_jcs` refuses."""
    try:
        encoded = orjson.dumps(event, option=_ORJSON_NATIVE_ONLY)
    except orjson.JSONEncodeError:
        return None
    return encoded if _surely_jcs(encoded, event) else None


def event_json(canonical: bytes, position: int, appended_at: str) -> bytes:
    """The event's JCS text within the canonical bytes of the entry at ``position`` appended at
    ``appended_at`` (what lies between the fixed head and tail; valid JSON)."""
    return canonical[len(_entry_head(appended_at)) : -len(_entry_tail(position))]


def encodes_event(canonical: bytes, position: int, appended_at: str, event: dict[str, Any]) -> bool:
    """Whether stored bytes are provably the canonical bytes of ``event`` (the event column, as
    parsed) at ``position`` appended at ``appended_at``: a fast path of
    :func:`stored_bytes_problem`, by byte comparisons and one orjson encoding of the column
    instead of a decode and a re-encode through the reference encoder. False means "not
    proven": :func:`stored_bytes_problem` decides, and says why.

    Sound because, when it says True, ``canonical`` is head + ``e`` + tail where ``e`` is
    orjson's sorted encoding of ``event``, proven its JCS text (:func:`_surely_jcs`: only
    strings, integers within ±(2**53 - 1), booleans, null, objects and arrays, of exactly those
    types, so no float), so ``canonical`` is ``entry_canonical_bytes(position, event,
    appended_at)``; :func:`decode_canonical_bytes` accepts it and decodes it to the same
    position, time and an event :func:`same_json` to ``event`` (such values read back from
    their JSON text as the very types they were written from). Comparing the column's own
    encoding with the bytes is type-exact where ``==`` on parsed values is not: ``1.0`` and
    ``true`` are not encoded as ``1``."""
    if not _APPENDED_AT.fullmatch(appended_at):
        return False
    return encodes_event_after(canonical, _entry_head(appended_at), position, event)


def entry_head(appended_at: str) -> bytes:
    """What the canonical bytes of every entry appended at ``appended_at`` begin with (the
    time checked: :func:`format_appended_at`'s form): a verifier computes it once per append
    time and hands it to :func:`encodes_event_after` (#12)."""
    _check_appended_at(appended_at)
    return _entry_head(appended_at)


def encodes_event_after(
    canonical: bytes, head: bytes, position: int, event: dict[str, Any]
) -> bool:
    """:func:`encodes_event` with the head of the entry's append time given
    (:func:`entry_head`): the same proof, without checking and encoding the time again for
    every row of an append."""
    body = _body_between(canonical, head, position)
    if body is None:
        return False
    try:
        if orjson.dumps(event, option=_ORJSON_NATIVE_ONLY) != body:
            return False
    except orjson.JSONEncodeError:
        return False
    return _surely_jcs(body, event)


def proven_event_after(canonical: bytes, head: bytes, position: int) -> dict[str, Any] | None:
    """The event that stored bytes are provably the canonical bytes of, at ``position`` and
    the append time of ``head`` (:func:`entry_head`), or None ("not proven":
    :func:`stored_bytes_problem` decides, and says why). For an entry that stores its event
    only inside its bytes (migration 006, #12): the event is parsed from them once, and the
    proof is :func:`encodes_event_after`'s with that event, so it is as strict: the bytes
    are head + orjson's sorted encoding of the event, proven its JCS text, + tail."""
    # :func:`_body_between` and :func:`_surely_jcs` written out: one call per entry instead
    # of four, the verifier's hottest path (#12); the same checks in the same order.
    if type(position) is not int or not 1 <= position <= MAX_POSITION:
        return None
    tail = b"%s%d}" % (_TAIL_START, position)
    if not (canonical.startswith(head) and canonical.endswith(tail)):
        return None
    body = canonical[len(head) : len(canonical) - len(tail)]
    try:
        event = orjson.loads(body)
        if type(event) is not dict or orjson.dumps(event, option=_ORJSON_NATIVE_ONLY) != body:
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    if body.isascii() and _plain_json(event, _EVENT_NESTING):
        return event
    return None


def _body_between(canonical: bytes, head: bytes, position: int) -> bytes | None:
    """What stored bytes hold between ``head`` and the tail of a valid ``position`` (the
    event's encoding, if they are an entry's canonical bytes there), or None."""
    if type(position) is not int or not 1 <= position <= MAX_POSITION:
        return None
    tail = b"%s%d}" % (_TAIL_START, position)
    if not (canonical.startswith(head) and canonical.endswith(tail)):
        return None
    return canonical[len(head) : len(canonical) - len(tail)]


_HEAD_SIZE = len(_entry_head("2024-05-01T09:30:00.000000Z"))


def stored_event(canonical: bytes, position: int) -> dict[str, Any]:
    """The event an entry's stored bytes hold, for a reader, where the entry stores its event
    there only (migration 006, #12): the JSON object between the bytes' head and the tail of
    ``position``, or ``{}`` when they hold none (tampered bytes; verification reports them,
    :func:`stored_bytes_problem`, and an empty object is no envelope). Not a proof of
    anything: verification checks the bytes themselves."""
    tail = b"%s%d}" % (_TAIL_START, position)
    if not (
        canonical.startswith(_HEAD_START)
        and canonical[_HEAD_SIZE - len(_HEAD_END) : _HEAD_SIZE] == _HEAD_END
        and canonical.endswith(tail)
    ):
        return {}
    try:
        event = orjson.loads(canonical[_HEAD_SIZE : len(canonical) - len(tail)])
    except orjson.JSONDecodeError:
        return {}
    return event if type(event) is dict else {}


def _number_problem(event: dict[str, Any]) -> str | None:
    """Where ``event`` holds a number its entry could not be verified with (the module
    docstring, **Numbers**), or None. Says where, never the value (it may be personal, D-04,
    and the reason travels in a dead-letter header). Only events that are not plain JSON
    without floats come here: orjson took the others."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(event, ())]
    while stack:
        node, path = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend((value, (*path, str(key))) for key, value in node.items())
        elif kind is list:
            stack.extend((value, (*path, str(i))) for i, value in enumerate(node))
        elif (
            kind is not bool
            and isinstance(node, int | float)
            # ``not <=`` also refuses NaN and the infinities, which JSON has no text for.
            and not -_JCS_MAX_INT <= node <= _JCS_MAX_INT
        ):
            where = printable_field(".".join(path), 120) or "the event"
            return (
                f"the number at {where} is outside ±(2**53 - 1), the range in which RFC 8785 "
                "writes numbers so that they read back as written: an entry holding it could "
                "never be verified"
            )
    return None


def _orjson_is_jcs(document: Any) -> bool:
    """Whether orjson's sorted-key output is byte for byte the JCS encoding of ``document``.

    It is for documents of objects with ASCII keys (JCS sorts keys by UTF-16 code units,
    orjson by code points: they agree on ASCII), arrays, strings (both escape exactly ``"``,
    ``\\`` and the C0 controls, in the same forms, and write everything else as UTF-8),
    integers JCS can represent, booleans and null. Floats (JCS writes ``1.0`` as ``1``) and
    anything else take the reference implementation (``rfc8785``), about a hundred times
    slower: hashing was what limited the ledger's append and verify rates (#12).
    """
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if not -_JCS_MAX_INT <= node <= _JCS_MAX_INT:
                return False
        elif depth >= _JCS_MAX_DEPTH:
            return False
        elif kind is dict:
            for key, value in node.items():
                if type(key) is not str or not key.isascii():
                    return False
                stack.append((value, depth + 1))
        elif kind is list:
            stack.extend((value, depth + 1) for value in node)
        else:
            return False
    return True


_DOCUMENT_KEYS = frozenset({"appended_at", "event", "format", "position"})


def decode_canonical_bytes(canonical: bytes) -> tuple[int, dict[str, Any], str]:
    """``(position, event, appended_at)`` that stored canonical bytes encode.

    Raises :class:`CanonicalisationError` unless ``canonical`` is exactly the canonical bytes of
    an entry (definition above): re-encoding what it decodes to must give the same bytes, so
    duplicate keys, whitespace or another format version are refused, not interpreted."""
    try:
        document = json.loads(canonical.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CanonicalisationError(f"stored bytes are not UTF-8 JSON: {error}") from None
    if not isinstance(document, dict) or set(document) != _DOCUMENT_KEYS:
        raise CanonicalisationError("stored bytes are not an entry document")
    if document["format"] != ENTRY_FORMAT:
        raise CanonicalisationError(f"stored bytes have format {document['format']!r}")
    position, event, appended_at = (
        document["position"],
        document["event"],
        document["appended_at"],
    )
    if entry_canonical_bytes(position, event, appended_at) != canonical:
        raise CanonicalisationError("stored bytes are not in canonical form")
    return position, event, appended_at


def stored_bytes_problem(entry: ChainEntry) -> str | None:
    """Why an entry's stored canonical bytes do not encode its position, append time and
    event (None if they do, or if the entry has none: written before they were stored)."""
    if entry.canonical is None:
        return None
    try:
        position, event, appended_at = decode_canonical_bytes(entry.canonical)
    except CanonicalisationError as error:
        return f"canonical bytes: {error}"
    if position != entry.position:
        return "canonical bytes encode another position"
    if appended_at != entry.appended_at:
        return "column appended_at does not match the entry's canonical bytes"
    column = dict(entry.event)
    if not same_json(event, column):
        if event == column:  # equal only to Python: 1 == 1.0 == True
            return (
                "column event does not match the entry's canonical bytes "
                "(a value of another JSON type, such as 1.0 or true for 1)"
            )
        return "column event does not match the entry's canonical bytes"
    return None


def same_json(left: Any, right: Any) -> bool:
    """``left`` and ``right`` are the same JSON value with the same Python types throughout:
    what ``==`` is not, since ``1 == 1.0 == True`` and ``0 == False``. Two numbers of
    different types are different texts in the event column and in an export, so a column
    rewritten from ``1`` to ``1.0`` or ``true`` must not pass as unchanged (iterative: a deep
    column cannot exhaust the stack)."""
    stack: list[tuple[Any, Any]] = [(left, right)]
    while stack:
        a, b = stack.pop()
        kind = type(a)
        if kind is not type(b):
            return False
        if kind is dict:
            if a.keys() != b.keys():
                return False
            stack.extend((value, b[key]) for key, value in a.items())
        elif kind is list:
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif a != b:
            return False
    return True


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """``SHA-256(prev_hash || canonical)``: each entry commits to the whole history before it."""
    if len(prev_hash) != HASH_SIZE:
        raise ValueError(f"prev_hash must be {HASH_SIZE} bytes, got {len(prev_hash)}")
    return hashlib.sha256(prev_hash + canonical).digest()


def entry_hash(
    prev_hash: bytes, position: int, event: Mapping[str, Any], appended_at: str
) -> bytes:
    """Hash of a new entry in one call: what the ledger writer stores as ``hash``."""
    return chain_hash(prev_hash, entry_canonical_bytes(position, event, appended_at))


def entry_leaf_hash(entry_hash_value: bytes) -> bytes:
    """Merkle leaf hash of an entry: ``SHA-256(0x00 || hash)`` (docs/api.md, proofs)."""
    if len(entry_hash_value) != HASH_SIZE:
        raise ValueError(f"an entry hash is {HASH_SIZE} bytes, got {len(entry_hash_value)}")
    return leaf_hash(entry_hash_value)


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One ledger entry as stored or exported: what the verifier needs, nothing more."""

    position: int
    event: Mapping[str, Any]
    appended_at: str
    prev_hash: bytes
    hash: bytes
    pruned: bool = False
    """Payload dropped by retention: only the linkage can be checked (module docstring)."""
    canonical: bytes | None = None
    """The bytes the writer hashed, as stored (None for entries written before they were
    stored, for pruned ones and in exports): when present the chain re-hashes exactly these
    bytes and checks they encode ``position``, ``event`` and ``appended_at``."""


class ChainState(NamedTuple):
    """What decides how a :class:`ChainVerifier` takes its next entry."""

    expected: int
    prev: bytes
    also: bytes | None


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """Outcome of verifying a chain (the body of ``GET /v1/audit/verify`` plus diagnostics).

    ``entries`` counts the entries that verified, all of them when ``ok``; verification stops at
    the first bad one. ``head`` is the hex hash of the last entry that verified (the starting
    ``prev_hash`` if none did). ``tree_root`` is the hex RFC 6962 root over those ``entries``
    leaves, to compare with a signed checkpoint of that size; ``None`` when verification started
    after position 1 or went past the verifier's ``tree_leaves``.
    """

    ok: bool
    entries: int
    head: str
    first_bad_position: int | None
    reason: str | None
    tree_root: str | None
    bad_positions: tuple[int, ...] = ()
    """With ``keep_going``: every bad position (the first :data:`MAX_LISTED_BAD` of them)."""
    bad_count: int = 0


PENDING_LEAVES = 4096
"""At most this many entry hashes wait for the tree (:meth:`ChainVerifier._grow_tree`)."""

MAX_LISTED_BAD = 1000
"""How many bad positions a verdict lists (all are counted)."""


class ChainVerifier:
    """Streaming chain verification: feed entries in ledger order; memory stays constant
    (one hash plus an O(log n) Merkle range), so a ledger of any length can be checked, from a
    synchronous iterator (:func:`verify_chain`) or page by page from an async reader.
    """

    __slots__ = (
        "_also",
        "_bad_count",
        "_bad_position",
        "_bad_positions",
        "_count",
        "_expected",
        "_keep_going",
        "_pending",
        "_prev",
        "_reason",
        "_tree",
        "_tree_leaves",
    )

    def __init__(
        self,
        *,
        start_position: int = 1,
        prev_hash: bytes = GENESIS_PREV_HASH,
        keep_going: bool = False,
        tree_leaves: int | None = None,
    ) -> None:
        """``start_position``/``prev_hash`` let a verifier resume from a trusted point.

        ``keep_going``: a bad entry does not end verification; the chain goes on from the
        entry's stored hash, so every later entry is still checked against its own content
        and link, and a later rewrite is found too (one bad row must not hide the others).

        ``tree_leaves``: the Merkle root is needed only up to this many entries (the largest
        signed checkpoint); past it no tree is kept and the verdict has no ``tree_root``."""
        _check_position(start_position)
        if len(prev_hash) != HASH_SIZE:
            raise ValueError(f"prev_hash must be {HASH_SIZE} bytes, got {len(prev_hash)}")
        if start_position == 1 and prev_hash != GENESIS_PREV_HASH:
            raise ValueError("position 1 always follows the genesis prev_hash (32 zero bytes)")
        self._expected = start_position
        self._prev = prev_hash
        self._count = 0
        self._bad_position: int | None = None
        self._reason: str | None = None
        self._tree: CompactRange | None = CompactRange() if start_position == 1 else None
        self._pending: list[bytes] = []
        """Entry hashes taken since the tree was last read, its next leaves' inputs: the
        tree grows by them in one batch when it is read (:meth:`_settled_tree`, #12)."""
        self._tree_leaves = tree_leaves
        self._keep_going = keep_going
        self._also: bytes | None = None
        """After a bad entry: its recomputed hash, an accepted link too (see :meth:`_resync`)."""
        self._bad_positions: list[int] = []
        self._bad_count = 0

    @property
    def failed(self) -> bool:
        """True once a bad entry was seen; later entries are then ignored unless
        ``keep_going``."""
        return self._bad_position is not None and not self._keep_going

    def feed(self, entry: ChainEntry) -> bool:
        """Check the next entry; False at a bad one (then, without ``keep_going``, the verdict
        is fixed)."""
        if self.failed:
            return False
        problem = self._problem_with(entry)
        if problem is not None:
            self.mark_bad(self._expected, problem)
            if not self._keep_going:
                return False
            self._resync(entry)
            return False
        self._advance(entry.hash)
        return True

    def accept(self, position: int, prev_hash: bytes, hash_: bytes, canonical: bytes) -> bool:
        """The fast path of :meth:`feed` for an entry with stored bytes whose other checks
        (the bytes encode its position, time and event: :func:`encodes_event`) the caller
        has made: True and the entry is taken when its position and link are the next and
        ``SHA-256(prev_hash || canonical)`` is its hash; False and nothing changes otherwise
        (the caller then feeds the whole entry, which says what is wrong)."""
        if position != self._expected or (
            self._bad_position is not None and not self._keep_going  # :attr:`failed`
        ):
            return False
        if prev_hash != self._prev and (self._also is None or prev_hash != self._also):
            return False
        if hashlib.sha256(prev_hash + canonical).digest() != hash_:
            return False
        # :meth:`_advance` written out: every entry of a ledger comes here (#12). The tree's
        # step stays a call: a segment's chain grows its own (``_SegmentChain``).
        self._prev = hash_
        self._also = None
        self._grow_tree(hash_)
        self._count += 1
        self._expected += 1
        return True

    def state(self) -> ChainState:
        """Where the chain stands: the position it expects next and the links it takes."""
        return ChainState(self._expected, self._prev, self._also)

    def links(self, prev_hash: bytes) -> bool:
        """Whether an entry whose ``prev_hash`` is this would link here."""
        return prev_hash == self._prev or (self._also is not None and prev_hash == self._also)

    def resume(self, state: ChainState, entries: int) -> None:
        """Take over where a verifier of the next ``entries`` entries ended (its
        :meth:`state`): one that started from this chain's state, or from one that an entry
        linking to this chain treats alike (:meth:`LedgerAuditor.joins`). Marks and the tree
        are its caller's (:meth:`mark_bad`, :meth:`tree_with`, :meth:`set_tree`)."""
        self._expected, self._prev, self._also = state
        self._count += entries

    @property
    def entries(self) -> int:
        """Entries taken so far (the tree's leaves, while it is kept)."""
        return self._count

    def tree_with(self, subtrees: Sequence[tuple[int, bytes]], leaves: int) -> CompactRange | None:
        """The tree as :meth:`_grow_tree` leaves it after ``leaves`` more entries whose leaf
        hashes form ``subtrees`` (``(level, root)``, aligned from the tree's size: an
        :class:`~branchline_audit.domain.merkle.AlignedRange`), without changing it; None when
        no tree is kept then."""
        tree = self._settled_tree()
        if tree is None:
            return None
        if self._tree_leaves is not None and tree.size + leaves > self._tree_leaves:
            return None  # the leaf past tree_leaves drops the tree
        grown = CompactRange.restore(tree.size, tree.hashes)
        for level, root in subtrees:
            grown.append_subtree(level, root)
        return grown

    def set_tree(self, tree: CompactRange | None) -> None:
        self._pending.clear()  # leaves of the tree replaced
        self._tree = tree

    def _advance(self, hash_: bytes) -> None:
        self._prev = hash_
        self._also = None
        self._grow_tree(hash_)
        self._count += 1
        self._expected += 1

    def _grow_tree(self, hash_: bytes) -> None:
        tree = self._tree
        if tree is None:
            return
        pending = self._pending
        if self._tree_leaves is not None and tree.size + len(pending) >= self._tree_leaves:
            pending.clear()
            self._tree = None  # no checkpoint beyond: the root is never asked for again
            return
        pending.append(hash_)
        if len(pending) >= PENDING_LEAVES:
            self._settled_tree()  # memory stays constant however far apart the reads are

    def _settled_tree(self) -> CompactRange | None:
        """The tree grown by every entry taken (what appending each leaf as it came would
        have made): the pending leaves' complete subtrees built a level at a time and
        appended whole (:meth:`CompactRange.append_subtree`), instead of two or three Python
        calls and the same hashes per entry (#12)."""
        tree = self._tree
        if tree is not None and self._pending:
            grow_by_leaves(tree, self._pending)
            self._pending.clear()
        return tree

    def mark_bad(self, position: int, reason: str) -> None:
        """Record ``position`` as bad (also for problems found outside the chain)."""
        if self._bad_position is None:
            self._bad_position, self._reason = position, reason
        if position in self._bad_positions[-1:]:
            return
        self._bad_count += 1
        if len(self._bad_positions) < MAX_LISTED_BAD:
            self._bad_positions.append(position)

    def _resync(self, entry: ChainEntry) -> None:
        """Go on after a bad entry: the next entry may link to its stored hash (its content was
        altered) or to the hash its content gives (its hash column was altered); either way
        only the bad entry is reported, and every later one is checked in full."""
        if isinstance(entry.position, int) and entry.position >= self._expected:
            self._expected = entry.position
        stored = entry.hash if len(entry.hash) == HASH_SIZE else bytes(HASH_SIZE)
        try:
            self._also = chain_hash(
                entry.prev_hash if len(entry.prev_hash) == HASH_SIZE else self._prev,
                _hashed_bytes(entry),
            )
        except (CanonicalisationError, ValueError, TypeError):
            self._also = None
        self._prev = stored
        self._grow_tree(stored)
        self._count += 1
        self._expected += 1

    def _problem_with(self, entry: ChainEntry) -> str | None:
        """Why ``entry`` cannot be the next entry of this chain, or None if it can."""
        if entry.position != self._expected:
            return (
                f"expected position {self._expected}, found {entry.position!r} "
                "(an entry is missing, duplicated or out of order)"
            )
        if entry.prev_hash != self._prev and (self._also is None or entry.prev_hash != self._also):
            return f"prev_hash does not equal the hash of position {self._expected - 1}"
        if entry.pruned:
            if len(entry.hash) != HASH_SIZE:
                return f"hash must be {HASH_SIZE} bytes"
            return None
        try:
            recomputed = chain_hash(
                entry.prev_hash,  # equal to the hash before (or, after a bad one, its content's)
                _hashed_bytes(entry),
            )
        except CanonicalisationError as error:
            return f"entry has no canonical bytes: {error}"
        if entry.hash != recomputed:
            return "hash does not match the recomputed hash of the entry's content"
        return stored_bytes_problem(entry)

    def verdict(self) -> ChainVerdict:
        """The result so far (final once the input is exhausted)."""
        return ChainVerdict(
            ok=self._bad_position is None,
            entries=self._count,
            head=self._prev.hex(),
            first_bad_position=self._bad_position,
            reason=self._reason,
            tree_root=None if (tree := self._settled_tree()) is None else tree.root().hex(),
            bad_positions=tuple(self._bad_positions),
            bad_count=self._bad_count,
        )


def grow_by_leaves(tree: CompactRange | AlignedRange, entry_hashes: Sequence[bytes]) -> None:
    """Append to ``tree`` (a whole tree, or a segment's aligned range) the leaves of
    ``entry_hashes`` (each one's :func:`~branchline_audit.domain.merkle.leaf_hash`), in
    order: the same tree as appending them one by one. Each largest complete subtree that can
    follow the tree's end is built a level at a time (RFC 6962 node hashes of pairs) and
    appended whole (#12)."""
    sha256 = hashlib.sha256
    leaves = [sha256(LEAF_PREFIX + h).digest() for h in entry_hashes]
    done, count = 0, len(leaves)
    while done < count:
        end = tree.end
        level = (count - done).bit_length() - 1
        if end:  # a subtree of 2**level leaves starts only at a multiple of 2**level
            level = min(level, (end & -end).bit_length() - 1)
        nodes = leaves[done : done + (1 << level)]
        while len(nodes) > 1:
            nodes = [
                sha256(NODE_PREFIX + nodes[i] + nodes[i + 1]).digest()
                for i in range(0, len(nodes), 2)
            ]
        tree.append_subtree(level, nodes[0])
        done += 1 << level


def _hashed_bytes(entry: ChainEntry) -> bytes:
    """What the chain hashes for ``entry``: its stored canonical bytes when it has them (no
    round trip through jsonb and typed columns), otherwise the bytes its content gives."""
    if entry.canonical is not None:
        return entry.canonical
    return entry_canonical_bytes(entry.position, entry.event, entry.appended_at)


def verify_chain(
    entries: Iterable[ChainEntry],
    *,
    start_position: int = 1,
    prev_hash: bytes = GENESIS_PREV_HASH,
) -> ChainVerdict:
    """Recompute the chain over ``entries`` (ledger order, positions gap-free from
    ``start_position``) and report the first position that does not hold. Consumes the
    iterable lazily and stops at the first bad entry."""
    verifier = ChainVerifier(start_position=start_position, prev_hash=prev_hash)
    for entry in entries:
        if not verifier.feed(entry):
            break
    return verifier.verdict()
