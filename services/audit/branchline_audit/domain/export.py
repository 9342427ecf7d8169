"""The export format of the audit trail and its offline verification (ADR-0006).

An export is checked on another machine with nothing but this module's rules and the log's
verifier key (``GET /v1/audit/public-key``). Format ``branchline.audit.export.v1``:

**Entry object** (one per exported entry, in ledger order)::

    {"position", "appended_at", "prev_hash", "hash",        # as in the ledger (hex hashes)
     "event",                                               # the event in the reader's view
     "view",                                                # full|masked|restricted|shredded|pruned
     "proof",                                               # filtered exports: inclusion path
     "line_digest"}                                         # running digest, below

- ``view`` ``full``: the event is exactly what the ledger hashed, so
  ``hash = SHA-256(prev_hash || canonical bytes)`` is recomputed (canonical bytes:
  :mod:`.canonical`). Other views withheld something (personal data, D-04; a pruned payload,
  D-11): their hash is proven by the chain or by the proof, their content by ``line_digest``.
- ``proof``: in a filtered export (entries not contiguous) the RFC 9162 inclusion path, hex, of
  leaf ``position - 1`` in the tree of the manifest's checkpoint; absent in a complete export,
  where chaining every entry and recomputing the root proves the same.
- ``line_digest``: ``D(k) = SHA-256(D(k-1) || JCS(entry object without line_digest))`` with
  ``D(0)`` 32 zero bytes; the last one is signed in the manifest. A changed, missing, added or
  reordered line breaks the digest at that line.

**Files.** ``jsonl``: each entry object as one line of RFC 8785 JSON; the last line is
``{"manifest": {...}, "signature": "<signed note>"}``, also RFC 8785. ``csv`` (RFC 4180, ``\\n``
line ends): a header ``position,appended_at,prev_hash,hash,event,view,proof,line_digest``, one
row per entry (``event`` as RFC 8785 JSON, ``proof`` as space-separated hex), then a last row
``manifest,,,,<the same JSON object as the jsonl last line>,,,``. Every line is in exactly the
form written (a one-byte change anywhere is a different line and is reported with its number).

**Manifest** (RFC 8785 JSON)::

    {"format", "content", "origin", "filters", "purpose", "exported_by", "exported_at",
     "complete", "count", "first_position", "last_position", "lines_digest",
     "tree_size", "root_hash", "checkpoint"}

``checkpoint`` is the signed C2SP tlog-checkpoint of ``tree_size`` entries whose root is
``root_hash``. ``signature`` is a C2SP signed note by the log's key whose text is
``JCS(manifest) + "\\n"``.

**Incomplete exports.** An export the server could not finish once it had started streaming
(an entry altered behind the ledger's back after the export's check, D-11; the database lost
mid-stream) ends, in place of the manifest, with a signed trailer: jsonl
``{"incomplete": {...}, "signature": "<signed note>"}``, csv
``incomplete,,,,<the same JSON object>,,,``. Its object holds ``format``, ``content``,
``origin``, ``filters``, ``purpose``, ``exported_by``, ``exported_at``, ``complete`` (as the
manifest's: unfiltered), ``count``, ``first_position``, ``last_position`` and
``lines_digest`` of the lines sent, ``reason`` (why it stopped), ``rule`` (the domain rule, or
null), and ``tree_size``, ``root_hash`` and ``checkpoint`` once the checkpoint was signed.
The verifier checks the lines before it as it checks a manifest's (save the root rebuilt from
a complete export's entries) and reports the export as incomplete, naming the reason: it is
never accepted. An export whose last line is neither (a cut download) is rejected as before.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import rfc8785

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    CanonicalisationError,
    chain_hash,
    entry_canonical_bytes,
)
from branchline_audit.domain.merkle import HASH_SIZE, CompactRange, leaf_hash, verify_inclusion
from branchline_audit.domain.note import NoteError, Signer, Verifier, open_checkpoint, open_note

EXPORT_FORMAT = "branchline.audit.export.v1"
ExportContent = Literal["jsonl", "csv"]
CSV_COLUMNS = (
    "position",
    "appended_at",
    "prev_hash",
    "hash",
    "event",
    "view",
    "proof",
    "line_digest",
)
INCOMPLETE = "incomplete"
"""The key (jsonl) and first cell (csv) of the trailer of an export the server could not finish."""
VIEWS = frozenset({"full", "masked", "restricted", "shredded", "pruned"})
GENESIS_LINE_DIGEST = bytes(HASH_SIZE)


_JCS_INT_MAX = 2**53 - 1
"""The largest integer RFC 8785 writes (rfc8785 refuses larger ones)."""


def _plain_string(value: object) -> bool:
    """A string whose RFC 8785 form is itself between quotes: printable ASCII, no quote or
    backslash (an RFC 3339 time, a view name)."""
    return (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    )


def jcs(value: Any) -> bytes:
    encoded: bytes = rfc8785.dumps(value)
    return encoded


_COMPACT = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


def _compact_is_jcs(value: object) -> bool:
    """Whether ``json``'s compact sorted form of ``value`` is its RFC 8785 form: only exact
    dicts with ASCII keys (sorted by code point = by UTF-16 unit), lists, strings without
    surrogates (both escape the same characters the same way, lowercase ``\\u00xx``), ints
    RFC 8785 accepts, booleans and nulls. A float (ECMAScript number form) or anything else
    is left to the canonicaliser."""
    # isinstance narrows for mypy, the exact type keeps subclasses (an Enum...) out. The
    # scalars of a container are checked in its loop: a call per value was most of the cost.
    kind = type(value)
    if isinstance(value, dict) and kind is dict:
        items: Iterable[object] = value.values()
        if not all(type(key) is str and key.isascii() for key in value):
            return False
    elif isinstance(value, list) and kind is list:
        items = value
    else:
        return _scalar_is_jcs(value)
    for item in items:
        inner = type(item)
        if isinstance(item, str) and inner is str:
            if not item.isascii() and _SURROGATE.search(item):
                return False
        elif inner is dict or inner is list:
            if not _compact_is_jcs(item):
                return False
        elif not _scalar_is_jcs(item):
            return False
    return True


def _scalar_is_jcs(value: object) -> bool:
    kind = type(value)
    if isinstance(value, str) and kind is str:
        return value.isascii() or not _SURROGATE.search(value)
    if isinstance(value, int) and kind is int:
        return -_JCS_INT_MAX <= value <= _JCS_INT_MAX
    return value is None or kind is bool


_SURROGATE = re.compile("[\ud800-\udfff]")


def jcs_text(value: Any) -> str:
    """``jcs(value)`` as text, through the C ``json`` encoder when that gives the same bytes
    (#12: the canonicaliser is pure Python, ~40 µs for an event); tested against ``jcs``
    in tests/unit/audit/test_audit_export_fast_lines.py."""
    if _compact_is_jcs(value):
        text: str = _COMPACT(value)
        return text
    return jcs(value).decode("utf-8")


def next_line_digest(previous: bytes, entry_object: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in entry_object.items() if k != "line_digest"}
    return hashlib.sha256(previous + jcs(body)).digest()


def _csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


CSV_HEADER = _csv_line(CSV_COLUMNS)


def _jcs_str(value: Any) -> str:
    return jcs(value).decode("utf-8")


def _csv_row(entry: Mapping[str, Any], event_text: Callable[[Any], str] = _jcs_str) -> list[str]:
    return [
        str(entry["position"]),
        entry["appended_at"],
        entry["prev_hash"],
        entry["hash"],
        event_text(entry["event"]),
        entry["view"],
        " ".join(entry.get("proof") or []),
        entry["line_digest"],
    ]


class ExportWriter:
    """Turns entry objects into the lines of an export, keeping the running digest."""

    def __init__(self, content: ExportContent) -> None:
        self.content = content
        self._digest = GENESIS_LINE_DIGEST
        self.count = 0
        self.first_position: int | None = None
        self.last_position: int | None = None

    def header(self) -> str:
        return CSV_HEADER if self.content == "csv" else ""

    def entry_line(
        self,
        *,
        position: int,
        appended_at: str,
        prev_hash: bytes,
        hash: bytes,
        event: Mapping[str, Any],
        view: str,
        proof: Sequence[bytes] | None,
    ) -> str:
        if not (
            type(position) is int
            and 0 <= position <= _JCS_INT_MAX
            and _plain_string(appended_at)
            and _plain_string(view)
        ):
            return self.reference_entry_line(
                position=position,
                appended_at=appended_at,
                prev_hash=prev_hash,
                hash=hash,
                event=event,
                view=view,
                proof=proof,
            )
        # The entry object's RFC 8785 form put together from its parts (#12): its keys and
        # their order are fixed, hex hashes, the position and plain strings need no escaping,
        # so only the event goes through the canonicaliser, once for the digest and the line
        # (it went through twice, with the ~17 proof hashes, at ~0.1 ms an entry), and it
        # through the C encoder when that gives the same bytes (``jcs_text``). The
        # fallback above and tests/unit/audit/test_audit_export_fast_lines.py keep it equal,
        # byte for byte, to ``reference_entry_line``.
        event_json = jcs_text(dict(event))
        prev_hex, hash_hex = prev_hash.hex(), hash.hex()
        head = f'{{"appended_at":"{appended_at}","event":{event_json},"hash":"{hash_hex}"'
        if proof is None:
            proof_json = ""
            proof_cell = ""
        else:
            hexes = [p.hex() for p in proof]
            proof_json = '"proof":["' + '","'.join(hexes) + '"],' if hexes else '"proof":[],'
            proof_cell = " ".join(hexes)
        tail = f'"position":{position},"prev_hash":"{prev_hex}",{proof_json}"view":"{view}"}}'
        self._digest = hashlib.sha256(self._digest + f"{head},{tail}".encode()).digest()
        digest_hex = self._digest.hex()
        self.count += 1
        if self.first_position is None:
            self.first_position = position
        self.last_position = position
        if self.content == "csv":
            return _csv_line(
                [
                    str(position),
                    appended_at,
                    prev_hex,
                    hash_hex,
                    event_json,
                    view,
                    proof_cell,
                    digest_hex,
                ]
            )
        return f'{head},"line_digest":"{digest_hex}",{tail}\n'

    def reference_entry_line(
        self,
        *,
        position: int,
        appended_at: str,
        prev_hash: bytes,
        hash: bytes,
        event: Mapping[str, Any],
        view: str,
        proof: Sequence[bytes] | None,
    ) -> str:
        """The entry's line as the format defines it (the entry object through the RFC 8785
        canonicaliser): what ``entry_line`` falls back to, and what it is tested against."""
        entry: dict[str, Any] = {
            "position": position,
            "appended_at": appended_at,
            "prev_hash": prev_hash.hex(),
            "hash": hash.hex(),
            "event": dict(event),
            "view": view,
        }
        if proof is not None:
            entry["proof"] = [p.hex() for p in proof]
        self._digest = next_line_digest(self._digest, entry)
        entry["line_digest"] = self._digest.hex()
        self.count += 1
        if self.first_position is None:
            self.first_position = position
        self.last_position = position
        if self.content == "csv":
            return _csv_line(_csv_row(entry))
        return jcs(entry).decode("utf-8") + "\n"

    @property
    def lines_digest(self) -> str:
        return self._digest.hex()

    def manifest_line(self, signer: Signer, manifest: Mapping[str, Any]) -> str:
        return self._signed_line(signer, "manifest", manifest)

    def incomplete_line(self, signer: Signer, trailer: Mapping[str, Any]) -> str:
        """The signed trailer ending an export the server could not finish (``trailer`` holds
        at least ``reason`` and ``rule``), in place of the manifest."""
        return self._signed_line(signer, INCOMPLETE, trailer)

    def _signed_line(self, signer: Signer, kind: str, manifest: Mapping[str, Any]) -> str:
        body = {
            **manifest,
            "format": EXPORT_FORMAT,
            "content": self.content,
            "count": self.count,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "lines_digest": self.lines_digest,
        }
        text = jcs(body).decode("utf-8") + "\n"
        signed = {kind: body, "signature": signer.sign_note(text)}
        encoded = jcs(signed).decode("utf-8")
        if self.content == "csv":
            return _csv_line([kind, "", "", "", encoded, "", "", ""])
        return encoded + "\n"


# --------------------------------------------------------------------------------------------
# Offline verification


@dataclass(frozen=True)
class ExportVerdict:
    ok: bool
    line: int | None
    reason: str | None
    entries: int
    complete: bool | None = None
    tree_size: int | None = None
    incomplete: bool = False
    """The export ends with the server's signed trailer saying it could not finish (``reason``
    names why); the lines before it hold, but the export is not accepted."""


class ExportRejected(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


LineSource = Callable[[], Iterable[bytes]]
"""Returns a fresh iterator over the file's lines (bytes, newline included): verification
reads the file twice (manifest first, then entries) and keeps constant memory."""


def _decode(raw: bytes, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ExportRejected(number, "not valid UTF-8") from None


def _parse_json(text: str, number: int) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ExportRejected(number, f"not valid JSON: {error}") from None


def _hex_hash(value: object, what: str, number: int) -> bytes:
    if isinstance(value, str) and len(value) == 2 * HASH_SIZE and value == value.lower():
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise ExportRejected(number, f"{what} is not a 64-digit lowercase hex hash")


def _parse_csv(text: str, number: int) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise ExportRejected(number, f"not valid CSV: {error}") from None
    if len(rows) != 1:
        raise ExportRejected(number, "not exactly one CSV row")
    return rows[0]


def _entry_from_csv(
    row: list[str], number: int, event_text: Callable[[Any], str] = _jcs_str
) -> dict[str, Any]:
    if len(row) != len(CSV_COLUMNS):
        raise ExportRejected(number, f"expected {len(CSV_COLUMNS)} columns, got {len(row)}")
    values = dict(zip(CSV_COLUMNS, row, strict=True))
    if not values["position"].isdigit():
        raise ExportRejected(number, "position is not a number")
    entry: dict[str, Any] = {
        "position": int(values["position"]),
        "appended_at": values["appended_at"],
        "prev_hash": values["prev_hash"],
        "hash": values["hash"],
        "event": _parse_json(values["event"], number),
        "view": values["view"],
    }
    if values["proof"]:
        entry["proof"] = values["proof"].split(" ")
    entry["line_digest"] = values["line_digest"]
    if _csv_line(_csv_row(entry, event_text)) != row_text(row):
        raise ExportRejected(number, "not in the exact form written (altered?)")
    return entry


def row_text(row: list[str]) -> str:
    return _csv_line(row)


def _lines(source: LineSource) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(source(), start=1):
        text = _decode(raw, number)
        if not text.endswith("\n"):
            raise ExportRejected(number, "line does not end with a newline (file truncated?)")
        yield number, text


def _read_manifest(
    source: LineSource, verifier: Verifier
) -> tuple[int, ExportContent, dict[str, Any], bytes | None, bool]:
    """The last line's signed manifest, or signed incomplete trailer (then ``True`` last, and
    the root ``None`` when the server stopped before signing its checkpoint)."""
    last: tuple[int, str] | None = None
    for number, text in _lines(source):
        last = (number, text)
    if last is None:
        raise ExportRejected(1, "the export is empty")
    number, text = last
    content: ExportContent = "csv" if text.startswith(("manifest,", f"{INCOMPLETE},")) else "jsonl"
    kind = "manifest"
    if content == "csv":
        row = _parse_csv(text, number)
        if (
            len(row) != len(CSV_COLUMNS)
            or row[0] not in ("manifest", INCOMPLETE)
            or any(row[1:4] + row[5:])
        ):
            raise ExportRejected(number, "the last row is not a manifest row")
        if row_text(row) != text:
            raise ExportRejected(number, "manifest row not in the exact form written")
        kind, signed_text = row[0], row[4]
    else:
        signed_text = text[:-1]
    signed = _parse_json(signed_text, number)
    if not isinstance(signed, dict) or (
        set(signed) != {"manifest", "signature"} and set(signed) != {INCOMPLETE, "signature"}
    ):
        raise ExportRejected(number, "the last line is not a signed manifest")
    incomplete = INCOMPLETE in signed
    if content == "csv" and (kind == INCOMPLETE) != incomplete:
        raise ExportRejected(number, "the last row's kind differs from its signed object")
    if jcs(signed).decode("utf-8") != signed_text:
        raise ExportRejected(number, "manifest not in canonical form (altered?)")
    manifest, signature = signed[INCOMPLETE if incomplete else "manifest"], signed["signature"]
    if not isinstance(manifest, dict) or not isinstance(signature, str):
        raise ExportRejected(number, "malformed manifest")
    try:
        opened = open_note(signature, [verifier])
    except NoteError as error:
        raise ExportRejected(number, f"manifest signature does not verify: {error}") from None
    if opened != jcs(manifest).decode("utf-8") + "\n":
        raise ExportRejected(number, "the signature is not over this manifest")
    if manifest.get("format") != EXPORT_FORMAT or manifest.get("content") != content:
        raise ExportRejected(number, f"not a {EXPORT_FORMAT} {content} export")
    if incomplete and manifest.get("checkpoint") is None:
        # Stopped before its checkpoint was signed: no entry can have been sent.
        if manifest.get("count") != 0:
            raise ExportRejected(number, "an incomplete export without checkpoint holds entries")
        return number, content, {**manifest, "tree_size": 0}, None, True
    try:
        checkpoint = open_checkpoint(
            str(manifest.get("checkpoint")), [verifier], origin=manifest.get("origin")
        )
    except NoteError as error:
        raise ExportRejected(number, f"the manifest's checkpoint fails: {error}") from None
    root = _hex_hash(manifest.get("root_hash"), "root_hash", number)
    if checkpoint.size != manifest.get("tree_size") or checkpoint.root != root:
        raise ExportRejected(number, "tree_size/root_hash differ from the signed checkpoint")
    return number, content, manifest, root, incomplete


def verify_export(source: LineSource, verifier: Verifier) -> ExportVerdict:
    """Check an export offline; the verdict names the first line that does not hold."""
    try:
        return _verify(source, verifier)
    except ExportRejected as rejected:
        return ExportVerdict(ok=False, line=rejected.line, reason=rejected.reason, entries=0)


def _verify(source: LineSource, verifier: Verifier) -> ExportVerdict:
    manifest_line, content, manifest, root, incomplete = _read_manifest(source, verifier)
    tree_size: int = manifest["tree_size"]
    complete = manifest.get("complete") is True
    digest = GENESIS_LINE_DIGEST
    tree = CompactRange()
    previous_position = 0
    previous_hash = GENESIS_PREV_HASH
    count = 0
    first_position: int | None = None
    for number, text in _lines(source):
        if number == manifest_line:
            break
        if content == "csv" and number == 1:
            if text != CSV_HEADER:
                raise ExportRejected(number, "not the CSV header of this format")
            continue
        try:
            entry, body = _read_entry(text, number, content)
            expected_digest = hashlib.sha256(digest + body).digest()
        except (ValueError, TypeError, KeyError, RecursionError) as error:  # JCS refusals too
            raise ExportRejected(number, f"not an entry of this format: {error!r}") from None
        if entry["line_digest"] != expected_digest.hex():
            raise ExportRejected(number, "line_digest does not match (line altered or moved)")
        digest = expected_digest
        position, entry_hash = _check_entry(entry, number, tree_size)
        if position <= previous_position:
            raise ExportRejected(number, "positions are not increasing")
        prev_hash = _hex_hash(entry["prev_hash"], "prev_hash", number)
        if complete:
            if position != previous_position + 1:
                raise ExportRejected(number, f"complete export: position {position} is not next")
            if prev_hash != previous_hash:
                raise ExportRejected(number, "prev_hash is not the hash of the entry before")
            tree.append(leaf_hash(entry_hash))
        else:
            proof = [_hex_hash(p, "proof hash", number) for p in entry.get("proof") or []]
            if root is None or not verify_inclusion(
                position - 1, tree_size, leaf_hash(entry_hash), proof, root
            ):
                raise ExportRejected(number, "the inclusion proof does not lead to the signed root")
        previous_position, previous_hash = position, entry_hash
        first_position = first_position or position
        count += 1
    if digest.hex() != manifest.get("lines_digest"):
        raise ExportRejected(manifest_line, "lines_digest differs: lines were removed or added")
    if count != manifest.get("count") or first_position != manifest.get("first_position"):
        raise ExportRejected(manifest_line, "count/first_position differ from the entries")
    if (previous_position or None) != manifest.get("last_position"):
        raise ExportRejected(manifest_line, "last_position differs from the entries")
    if incomplete:
        return ExportVerdict(
            ok=False,
            line=manifest_line,
            reason=_incomplete_reason(manifest, count),
            entries=count,
            complete=complete,
            tree_size=tree_size,
            incomplete=True,
        )
    if complete and (previous_position != tree_size or tree.root() != root):
        raise ExportRejected(manifest_line, "the entries do not rebuild the signed tree root")
    return ExportVerdict(
        ok=True, line=None, reason=None, entries=count, complete=complete, tree_size=tree_size
    )


def _incomplete_reason(trailer: Mapping[str, Any], count: int) -> str:
    last = trailer.get("last_position")
    where = f"after position {last}" if last is not None else "before its first entry"
    rule = trailer.get("rule")
    return (
        f"the export is incomplete: the server stopped it {where} ({count} entries sent, "
        f"no manifest){f' [{rule}]' if rule else ''}: {trailer.get('reason')}"
    )


def _parse_entry(text: str, number: int, content: ExportContent) -> dict[str, Any]:
    if content == "csv":
        return _entry_from_csv(_parse_csv(text, number), number)
    entry = _parse_json(text[:-1], number)
    if not isinstance(entry, dict):
        raise ExportRejected(number, "not an entry object")
    if jcs(entry).decode("utf-8") != text[:-1]:
        raise ExportRejected(number, "not in canonical form (altered?)")
    if not isinstance(entry.get("line_digest"), str):
        raise ExportRejected(number, "line_digest missing")
    return entry


def _reference_entry(
    text: str, number: int, content: ExportContent
) -> tuple[dict[str, Any], bytes]:
    """The entry object of a line, checked to be in its exact form, and the RFC 8785 bytes of
    it without ``line_digest`` (what its digest is over), by the canonicaliser: the format's
    definition, what :func:`_read_entry` falls back to and is tested against."""
    entry = _parse_entry(text, number, content)
    return entry, jcs({k: v for k, v in entry.items() if k != "line_digest"})


_DIGEST_KEY = "line_digest"


def _read_entry(text: str, number: int, content: ExportContent) -> tuple[dict[str, Any], bytes]:
    """:func:`_reference_entry`'s entry and bytes, or its refusal, with the values through
    ``jcs_text`` (the C encoder where that is RFC 8785's bytes, else the canonicaliser: #12,
    ``rfc8785`` took most of a line's check). A jsonl line is encoded once: RFC 8785 writes
    an object as its members sorted by key, so with ASCII keys (UTF-16 order is then
    ``str`` order) and a ``line_digest`` that is a plain string (its member is
    ``"line_digest":"<value>"``) the entry's form is the members before that key, that
    member, and the members after it, and the digested form the same without it. Anything
    else takes the reference. Tested against it in
    tests/unit/audit/test_audit_export_fast_verify.py."""
    if content == "csv":
        entry = _entry_from_csv(_parse_csv(text, number), number, jcs_text)
        body = {k: v for k, v in entry.items() if k != _DIGEST_KEY}
        return entry, jcs_text(body).encode("utf-8")
    entry = _parse_json(text[:-1], number)
    digest = entry.get(_DIGEST_KEY) if type(entry) is dict else None
    if not (
        isinstance(entry, dict)
        and _plain_string(digest)
        and all(type(key) is str and key.isascii() for key in entry)
    ):
        return _reference_entry(text, number, content)
    before = jcs_text({k: v for k, v in entry.items() if k < _DIGEST_KEY})[1:-1]
    after = jcs_text({k: v for k, v in entry.items() if k > _DIGEST_KEY})[1:-1]
    lower, upper = ([before] if before else []), ([after] if after else [])
    if "{" + ",".join([*lower, f'"{_DIGEST_KEY}":"{digest}"', *upper]) + "}" != text[:-1]:
        raise ExportRejected(number, "not in canonical form (altered?)")
    return entry, ("{" + ",".join([*lower, *upper]) + "}").encode("utf-8")


def _check_entry(entry: Mapping[str, Any], number: int, tree_size: int) -> tuple[int, bytes]:
    position = entry.get("position")
    if isinstance(position, bool) or not isinstance(position, int) or not position >= 1:
        raise ExportRejected(number, "position must be a positive integer")
    if position > tree_size:
        raise ExportRejected(number, f"position {position} is beyond the signed tree")
    entry_hash = _hex_hash(entry.get("hash"), "hash", number)
    prev_hash = _hex_hash(entry.get("prev_hash"), "prev_hash", number)
    view = entry.get("view")
    if view not in VIEWS:
        raise ExportRejected(number, f"unknown view {view!r}")
    event = entry.get("event")
    appended_at = entry.get("appended_at")
    if not isinstance(event, dict) or not isinstance(appended_at, str):
        raise ExportRejected(number, "event must be an object and appended_at a string")
    if view == "full":
        try:
            recomputed = chain_hash(prev_hash, entry_canonical_bytes(position, event, appended_at))
        except CanonicalisationError as error:
            raise ExportRejected(number, f"entry has no canonical bytes: {error}") from None
        if recomputed != entry_hash:
            raise ExportRejected(number, "hash does not match the entry's content")
    return position, entry_hash


def file_lines(path: str) -> LineSource:
    """A :data:`LineSource` over a file on disk (binary, so any byte change is seen)."""

    def lines() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            yield from handle

    return lines


def bytes_lines(data: bytes) -> LineSource:
    """A :data:`LineSource` over an export held in memory; lines end at ``\\n`` only."""

    def lines() -> Iterator[bytes]:
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            yield data[start:end]
            start = end

    return lines


__all__ = ["ExportVerdict", "ExportWriter", "verify_export"]
