"""C2SP signed notes (Ed25519) and C2SP tlog-checkpoints for the audit ledger.

Why these formats: a checkpoint signed this way is byte-compatible with Go's
``golang.org/x/mod/sumdb/note``, Sigstore and Trillian Tessera, so an auditor can check
Branchline's checkpoints with existing tools and only our public key.

- Signed note (https://c2sp.org/signed-note): ``text`` (UTF-8, ends in ``\\n``, no control
  characters but ``\\n``), a blank line, then one or more lines
  ``— <key name> <base64(key id || signature)>\\n`` (U+2014 EM DASH, space). The Ed25519
  signature covers the text including its final newline, not the blank line.
- Key id: ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` (0x01 = Ed25519).
- Verifier key: ``<name>+<key id, 8 lowercase hex>+<base64(0x01 || public key)>``; signer key
  (Go's format, a secret): ``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || 32-byte seed)>``.
- Checkpoint (https://c2sp.org/tlog-checkpoint): body
  ``<origin>\\n<tree size, decimal>\\n<base64 RFC 6962 root>\\n``.

Base64 is the standard alphabet with padding (RFC 4648 section 4); only canonical encodings are
accepted, so one value has one spelling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from branchline_audit.domain.merkle import HASH_SIZE

ED25519_SIGNATURE_TYPE = b"\x01"
KEY_ID_SIZE = 4
SIGNATURE_PREFIX = "\u2014 "
"""Every signature line starts with an em dash and a space."""
MAX_SIGNATURES = 100
"""Bound on work per note; the spec asks verifiers to accept at least 16."""
MAX_TREE_SIZE = 2**64 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """Base of every refusal in this module: callers can catch one type."""


class MalformedNoteError(NoteError):
    """The text is not a well-formed signed note."""


class UnknownKeyError(NoteError):
    """No signature in the note comes from a trusted key."""


class InvalidSignatureError(NoteError):
    """A trusted key's signature does not verify: the note was altered or forged."""


class InvalidKeyError(NoteError):
    """A key string or PEM document that cannot be used."""


class MalformedCheckpointError(NoteError):
    """A note body that is not a well-formed tlog-checkpoint."""


class UnexpectedOriginError(NoteError):
    """A valid checkpoint, but of another log than the one expected."""


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64: None unless ``text`` is the canonical encoding of some bytes."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return data if _b64encode(data) == text else None


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty, without Unicode spaces, ``+`` or control characters."""
    return bool(name) and "+" not in name and not any(ch.isspace() or ord(ch) < 0x20 for ch in name)


def compute_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id the signed-note spec recommends for Ed25519 keys."""
    material = name.encode("utf-8") + b"\n" + ED25519_SIGNATURE_TYPE + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_SIZE]


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _require_key_name(name: str) -> None:
    if not isinstance(name, str) or not is_valid_key_name(name):
        raise InvalidKeyError(
            f"invalid key name {name!r}: it must be non-empty, without spaces or '+'"
        )


class Verifier:
    """A trusted Ed25519 public key under a name: checks signatures on notes."""

    __slots__ = ("_key", "_key_id", "_name", "_public_bytes")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _require_key_name(name)
        self._name = name
        self._key = public_key
        self._public_bytes = _raw_public_key(public_key)
        self._key_id = compute_key_id(name, self._public_bytes)

    @classmethod
    def from_verifier_key(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``; the key id must match."""
        name, _, rest = vkey.partition("+")
        id_hex, _, key_b64 = rest.partition("+")
        encoded = _b64decode(key_b64)
        if not _KEY_ID_HEX.fullmatch(id_hex) or encoded is None:
            raise InvalidKeyError(f"malformed verifier key {vkey!r}")
        if len(encoded) != 1 + 32 or encoded[:1] != ED25519_SIGNATURE_TYPE:
            raise InvalidKeyError("verifier key is not an Ed25519 (type 0x01) public key")
        try:
            public_key = Ed25519PublicKey.from_public_bytes(encoded[1:])
        except ValueError as error:
            raise InvalidKeyError(f"invalid Ed25519 public key: {error}") from error
        verifier = cls(name, public_key)
        if verifier.key_id.hex() != id_hex.lower():
            raise InvalidKeyError("verifier key id does not match its name and public key")
        return verifier

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key

    @property
    def public_key_bytes(self) -> bytes:
        return self._public_bytes

    def verifier_key_string(self) -> str:
        """The form served at ``GET /v1/audit/public-key`` and pasted into tools."""
        encoded = _b64encode(ED25519_SIGNATURE_TYPE + self._public_bytes)
        return f"{self._name}+{self._key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """The log's Ed25519 signing key under a name: signs notes and checkpoints."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._verifier = Verifier(name, private_key.public_key())

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh key pair (operating-system randomness)."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_signer_key(cls, skey: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise InvalidKeyError("malformed signer key (expected PRIVATE+KEY+name+id+key)")
        _, _, name, id_hex, key_b64 = parts
        encoded = _b64decode(key_b64)
        if not _KEY_ID_HEX.fullmatch(id_hex) or encoded is None:
            raise InvalidKeyError("malformed signer key")
        if len(encoded) != 1 + 32 or encoded[:1] != ED25519_SIGNATURE_TYPE:
            raise InvalidKeyError("signer key is not an Ed25519 (type 0x01) seed")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(encoded[1:]))
        if signer.key_id.hex() != id_hex.lower():
            raise InvalidKeyError("signer key id does not match its name and public key")
        return signer

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    def verifier(self) -> Verifier:
        """The matching public verifier."""
        return self._verifier

    def verifier_key_string(self) -> str:
        return self._verifier.verifier_key_string()

    def signer_key_string(self) -> str:
        """The secret key in Go's signer-key form (for secret stores; never log it)."""
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        encoded = _b64encode(ED25519_SIGNATURE_TYPE + seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded}"

    def sign_note(self, text: str) -> str:
        """``text``, a blank line and this key's signature line."""
        _check_note_characters(text)
        if not text.endswith("\n"):
            raise MalformedNoteError("note text must end with a newline")
        signature = self._key.sign(text.encode("utf-8"))
        line = f"{SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id + signature)}\n"
        return f"{text}\n{line}"


def _check_note_characters(note: str) -> None:
    """Valid UTF-8 and no ASCII control character other than newline (spec, "Format")."""
    try:
        note.encode("utf-8")
    except UnicodeEncodeError as error:
        raise MalformedNoteError("note is not valid UTF-8") from error
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise MalformedNoteError("note contains a control character other than newline")


class _SignatureLine(NamedTuple):
    name: str
    key_id: bytes
    signature: bytes


def _parse_signature_line(line: str) -> _SignatureLine:
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNoteError(f"signature line does not start with an em dash: {line!r}")
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    raw = _b64decode(encoded)
    if not is_valid_key_name(name) or raw is None or len(raw) <= KEY_ID_SIZE:
        raise MalformedNoteError(f"malformed signature line: {line!r}")
    return _SignatureLine(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def _split_note(note_text: str) -> tuple[str, list[_SignatureLine]]:
    """Text and signature lines; the text ends before the note's last blank line."""
    _check_note_characters(note_text)
    split = note_text.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line separates the text from its signatures")
    text, block = note_text[: split + 1], note_text[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNoteError("the signature block must be non-empty and end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"more than {MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def _index_verifiers(verifiers: Iterable[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    index: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        known = index.get(key)
        if known is not None and known.public_key_bytes != verifier.public_key_bytes:
            raise InvalidKeyError(f"two trusted keys share name and id {verifier.name}")
        index[key] = verifier
    return index


def open_note(note_text: str, verifiers: Iterable[Verifier]) -> str:
    """Return the note's text once a trusted key's signature on it verifies.

    As the spec requires: signatures from unknown keys are ignored; a trusted key's signature
    that fails rejects the whole note (:class:`InvalidSignatureError`); no trusted signature at
    all is :class:`UnknownKeyError`; bad syntax is :class:`MalformedNoteError`.
    """
    trusted = _index_verifiers(verifiers)
    text, lines = _split_note(note_text)
    message = text.encode("utf-8")
    verified: set[tuple[str, bytes]] = set()
    for line in lines:
        key = (line.name, line.key_id)
        verifier = trusted.get(key)
        if verifier is None or key in verified:
            continue
        if not verifier.verify(message, line.signature):
            raise InvalidSignatureError(
                f"signature of {line.name}+{line.key_id.hex()} does not verify"
            )
        verified.add(key)
    if not verified:
        seen = ", ".join(f"{line.name}+{line.key_id.hex()}" for line in lines)
        raise UnknownKeyError(f"note is not signed by a trusted key (signed by: {seen})")
    return text


class Checkpoint(NamedTuple):
    """A tlog-checkpoint: which log, how many leaves, and the RFC 6962 root at that size."""

    origin: str
    size: int
    root: bytes


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """The checkpoint body (note text) for a tree head."""
    if not isinstance(origin, str) or not is_valid_key_name(origin):
        raise MalformedCheckpointError(
            f"origin {origin!r} must be non-empty, without spaces, '+' or control characters"
        )
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise MalformedCheckpointError(f"tree size must be an integer in 0..2**64-1, got {size!r}")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise MalformedCheckpointError(f"root hash must be {HASH_SIZE} bytes")
    return f"{origin}\n{size}\n{_b64encode(root)}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (the text :func:`open_note` returned).

    Branchline's checkpoints carry no extension lines, so any are refused rather than
    silently trusted.
    """
    if not body.endswith("\n"):
        raise MalformedCheckpointError("checkpoint must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) != 3:
        raise MalformedCheckpointError(
            f"checkpoint must have exactly 3 lines (origin, size, root), got {len(lines)}"
        )
    origin, size_text, root_text = lines
    if not origin or any(ord(ch) < 0x20 for ch in origin):
        raise MalformedCheckpointError("checkpoint origin must be a non-empty line")
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise MalformedCheckpointError(f"tree size {size_text!r} is not a canonical decimal")
    root = _b64decode(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise MalformedCheckpointError("root hash must be the base64 of 32 bytes")
    return Checkpoint(origin, int(size_text), root)


def sign_checkpoint(signer: Signer, origin: str, size: int, root: bytes) -> str:
    """A signed checkpoint note, ready to serve and store as is."""
    return signer.sign_note(format_checkpoint(origin, size, root))


def open_checkpoint(
    note_text: str, verifiers: Iterable[Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and parse it; with ``origin``, also require that log."""
    checkpoint = parse_checkpoint(open_note(note_text, verifiers))
    if origin is not None and checkpoint.origin != origin:
        raise UnexpectedOriginError(
            f"checkpoint is from {checkpoint.origin!r}, expected {origin!r}"
        )
    return checkpoint


def private_key_to_pem(key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when given (best available scheme)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_from_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM private key; refuses anything but Ed25519."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise InvalidKeyError(f"cannot load the private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKeyError(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_to_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the form ``openssl pkey -pubin`` reads."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(data: bytes) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM public key; refuses anything but Ed25519."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise InvalidKeyError(f"cannot load the public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKeyError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key
