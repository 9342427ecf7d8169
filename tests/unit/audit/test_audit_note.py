"""C2SP signed notes and tlog-checkpoints.

Checked three ways: against the published example of the Go reference implementation
(golang.org/x/mod/sumdb/note; Ed25519 is deterministic, so our signature must match byte for
byte), against an independent verifier written in this file from the C2SP specification text,
and against forgeries.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from branchline_audit.domain.note import (
    Checkpoint,
    InvalidKeyError,
    InvalidSignatureError,
    MalformedCheckpointError,
    MalformedNoteError,
    NoteError,
    Signer,
    UnexpectedOriginError,
    UnknownKeyError,
    Verifier,
    compute_key_id,
    format_checkpoint,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
    sign_checkpoint,
)

pytestmark = pytest.mark.unit

# The example of golang.org/x/mod/sumdb/note (package documentation and example_test.go).
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngo"
    "tpRZb6KE6RyyBwJnAM=\n"
)

ROOT = hashlib.sha256(b"a root").digest()


# --- an independent verifier, from https://c2sp.org/signed-note ---------------------------------


def spec_open(note: bytes, name: str, public_key: bytes) -> bytes | None:
    """Return the note text if ``name``/``public_key`` signed it, else None.

    Spec: text ending in newline, a blank line, then lines "em dash, space, key name, space,
    base64(4-byte big-endian key ID || signature)". The text includes the final newline but not
    the blank line and is separated by the last empty line. Ed25519 key ID =
    SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]; the signature covers the text.
    """
    try:
        note.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(b < 0x20 and b != 0x0A for b in note):
        return None
    split = note.rfind(b"\n\n")
    if split < 0:
        return None
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith(b"\n"):
        return None
    wanted_id = hashlib.sha256(name.encode() + b"\x0a\x01" + public_key).digest()[:4]
    for line in block[:-1].split(b"\n"):
        prefix = "\u2014 ".encode()
        if not line.startswith(prefix):
            return None
        line_name, _, encoded = line[len(prefix) :].partition(b" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            return None
        if line_name.decode() != name or raw[:4] != wanted_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text)
        except InvalidSignature:
            return None
        return text
    return None


def raw_public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@pytest.fixture
def signer() -> Signer:
    return Signer("branchline.example/audit", Ed25519PrivateKey.generate())


# --- the Go reference example ------------------------------------------------------------------


def test_go_reference_key_strings_and_key_id() -> None:
    go = Signer.from_signer_key(GO_SIGNER_KEY)
    assert go.name == "PeterNeumann"
    assert go.key_id.hex() == "c74f20a3"
    assert go.verifier_key_string() == GO_VERIFIER_KEY
    assert go.signer_key_string() == GO_SIGNER_KEY
    assert Verifier.from_verifier_key(GO_VERIFIER_KEY).key_id.hex() == "c74f20a3"


def test_go_reference_note_is_reproduced_byte_for_byte() -> None:
    assert Signer.from_signer_key(GO_SIGNER_KEY).sign_note(GO_TEXT) == GO_NOTE


def test_go_reference_note_opens() -> None:
    assert open_note(GO_NOTE, [Verifier.from_verifier_key(GO_VERIFIER_KEY)]) == GO_TEXT
    public = base64.b64decode(GO_VERIFIER_KEY.split("+", 2)[2])[1:]
    assert spec_open(GO_NOTE.encode(), "PeterNeumann", public) == GO_TEXT.encode()


# --- our notes against the independent verifier -------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "branchline.example/audit\n1024\nq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\n",
        "one line\n",
        "with an empty line\n\ninside, and unicode: \u5ba1\u8ba1\n",
    ],
)
def test_our_notes_verify_with_the_spec_verifier(signer: Signer, text: str) -> None:
    note = signer.sign_note(text)
    public = raw_public(signer.private_key)
    assert spec_open(note.encode(), signer.name, public) == text.encode()
    assert open_note(note, [signer.verifier()]) == text


def test_signature_line_layout(signer: Signer) -> None:
    note = signer.sign_note("hello\n")
    text, line = note.split("\n\n")
    assert text == "hello"
    match = re.fullmatch(r"\u2014 (\S+) ([A-Za-z0-9+/]+=*)\n", line)
    assert match is not None
    assert match.group(1) == signer.name
    raw = base64.b64decode(match.group(2))
    assert len(raw) == 4 + 64
    assert (
        raw[:4]
        == hashlib.sha256(
            signer.name.encode() + b"\n\x01" + raw_public(signer.private_key)
        ).digest()[:4]
    )


def test_every_altered_byte_is_refused(signer: Signer) -> None:
    note = sign_checkpoint(signer, signer.name, 1024, ROOT)
    data = note.encode()
    public = raw_public(signer.private_key)
    body_end = len(format_checkpoint(signer.name, 1024, ROOT).encode())
    for i in range(len(data)):
        altered = bytearray(data)
        altered[i] ^= 0x01
        if i < body_end:
            assert spec_open(bytes(altered), signer.name, public) is None, i
        with pytest.raises(NoteError):
            open_note(bytes(altered).decode("utf-8", errors="surrogateescape"), [signer.verifier()])


def test_altered_text_is_an_invalid_signature(signer: Signer) -> None:
    note = signer.sign_note("amount: 100\n")
    forged = note.replace("100", "900")
    with pytest.raises(InvalidSignatureError, match="does not verify"):
        open_note(forged, [signer.verifier()])
    assert spec_open(forged.encode(), signer.name, raw_public(signer.private_key)) is None


def test_unknown_key_is_refused(signer: Signer) -> None:
    note = signer.sign_note("hello\n")
    stranger = Signer(signer.name, Ed25519PrivateKey.generate())  # same name, other key
    with pytest.raises(UnknownKeyError, match="not signed by a trusted key"):
        open_note(note, [stranger.verifier()])
    with pytest.raises(UnknownKeyError):
        open_note(note, [])
    assert spec_open(note.encode(), stranger.name, raw_public(stranger.private_key)) is None


def test_unknown_signatures_are_ignored_but_a_bad_trusted_one_rejects(signer: Signer) -> None:
    witness = Signer("witness.example", Ed25519PrivateKey.generate())
    text = "hello\n"
    cosigned = signer.sign_note(text) + witness.sign_note(text).split("\n\n")[1]
    assert open_note(cosigned, [signer.verifier()]) == text
    assert open_note(cosigned, [witness.verifier()]) == text
    bad_line = witness.sign_note("other\n").split("\n\n")[1]
    with pytest.raises(InvalidSignatureError):
        open_note(signer.sign_note(text) + bad_line, [signer.verifier(), witness.verifier()])


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("no blank line\n\u2014 k AAAA\n", "blank line"),
        ("text\n\n", "signature block"),
        ("text\n\n\u2014 k AAAAAAA=", "signature block"),
        ("text\n\n- k AAAAAAAA\n", "em dash"),
        ("text\n\n\u2014 k AAAA\n", "malformed signature line"),
        ("text\n\n\u2014 k not base64!\n", "malformed signature line"),
        ("text\n\n\u2014 k+x AAAAAAAA\n", "malformed signature line"),
        ("text\n\n\u2014 k AAAAAAB=\n", "malformed signature line"),  # non-canonical base64
        ("te\txt\n\n\u2014 k AAAAAAAA\n", "control character"),
        ("te\udcffxt\n\n\u2014 k AAAAAAAA\n", "UTF-8"),
        ("text\n\n" + "\u2014 k AAAAAAAA\n" * 101, "more than 100"),
    ],
)
def test_malformed_notes_are_refused(signer: Signer, note: str, message: str) -> None:
    with pytest.raises(MalformedNoteError, match=message):
        open_note(note, [signer.verifier()])


def test_sign_note_refuses_text_that_cannot_be_a_note(signer: Signer) -> None:
    with pytest.raises(MalformedNoteError, match="newline"):
        signer.sign_note("no final newline")
    with pytest.raises(MalformedNoteError, match="control"):
        signer.sign_note("a\rb\n")


# --- key strings --------------------------------------------------------------------------------


def test_verifier_key_string_round_trip(signer: Signer) -> None:
    vkey = signer.verifier_key_string()
    name, id_hex, key_b64 = vkey.split("+", 2)
    public = raw_public(signer.private_key)
    assert name == signer.name
    assert id_hex == compute_key_id(name, public).hex()
    assert id_hex == hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4].hex()
    assert base64.b64decode(key_b64) == b"\x01" + public
    parsed = Verifier.from_verifier_key(vkey)
    assert parsed.verifier_key_string() == vkey
    assert parsed.public_key_bytes == public
    assert open_note(signer.sign_note("x\n"), [parsed]) == "x\n"


def test_signer_key_string_round_trip(signer: Signer) -> None:
    again = Signer.from_signer_key(signer.signer_key_string())
    assert again.verifier_key_string() == signer.verifier_key_string()


def test_mangled_verifier_keys_are_refused() -> None:
    """As the Go tests do: every proper substring and every byte + 1 must fail."""
    vkey = GO_VERIFIER_KEY
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(InvalidKeyError):
                    Verifier.from_verifier_key(vkey[i:j])
    for i in range(len(vkey)):
        mangled = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        with pytest.raises(InvalidKeyError):
            Verifier.from_verifier_key(mangled)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        # wrong key length and unknown algorithm (key ids adjusted, from the Go tests)
        ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", "malformed"),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "Ed25519"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
    ],
)
def test_bad_verifier_keys_name_the_problem(vkey: str, message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        Verifier.from_verifier_key(vkey)


@pytest.mark.parametrize(
    "skey", ["", GO_SIGNER_KEY[:-1], GO_SIGNER_KEY.replace("c74f20a3", "c74f20a4")]
)
def test_bad_signer_keys_are_refused(skey: str) -> None:
    with pytest.raises(InvalidKeyError):
        Signer.from_signer_key(skey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\nb", "a\u00a0b"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidKeyError, match="key name"):
        Signer(name, Ed25519PrivateKey.generate())


def test_ambiguous_trusted_keys_are_refused() -> None:
    real = Verifier.from_verifier_key(GO_VERIFIER_KEY)
    impostor = Verifier(real.name, Ed25519PrivateKey.generate().public_key())
    impostor._key_id = real.key_id  # a key-id collision: the spec warns one can be computed
    with pytest.raises(InvalidKeyError, match="share name and id"):
        open_note(GO_NOTE, [real, impostor])


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_body_format() -> None:
    body = format_checkpoint("branchline.example/audit", 1024, ROOT)
    assert body == f"branchline.example/audit\n1024\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(body) == Checkpoint("branchline.example/audit", 1024, ROOT)
    origin, size, root = parse_checkpoint(body)
    assert (origin, size, root) == ("branchline.example/audit", 1024, ROOT)


def test_empty_tree_checkpoint() -> None:
    empty = hashlib.sha256(b"").digest()
    body = format_checkpoint("log", 0, empty)
    assert body.splitlines()[1] == "0"
    assert parse_checkpoint(body).size == 0


def test_signed_checkpoint_round_trip(signer: Signer) -> None:
    note = sign_checkpoint(signer, signer.name, 7, ROOT)
    assert open_checkpoint(note, [signer.verifier()], origin=signer.name) == Checkpoint(
        signer.name, 7, ROOT
    )
    assert spec_open(note.encode(), signer.name, raw_public(signer.private_key)) is not None
    with pytest.raises(UnexpectedOriginError, match=r"expected 'other\.example/log'"):
        open_checkpoint(note, [signer.verifier()], origin="other.example/log")


def test_c2sp_example_checkpoint_body_parses() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = parse_checkpoint(body)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert format_checkpoint(*checkpoint) == body


B64_ROOT = base64.b64encode(ROOT).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xff" * 32).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"log\n5\n{B64_ROOT}", "newline"),
        (f"log\n5\n{B64_ROOT}\nextension\n", "exactly 3 lines"),
        ("log\n5\n", "exactly 3 lines"),
        (f"\n5\n{B64_ROOT}\n", "origin"),
        (f"log\n05\n{B64_ROOT}\n", "canonical decimal"),
        (f"log\n+5\n{B64_ROOT}\n", "canonical decimal"),
        (f"log\n 5\n{B64_ROOT}\n", "canonical decimal"),
        (f"log\n1_000\n{B64_ROOT}\n", "canonical decimal"),
        (f"log\n\u0663\n{B64_ROOT}\n", "canonical decimal"),
        (f"log\n{2**64}\n{B64_ROOT}\n", "canonical decimal"),
        (f"log\n-1\n{B64_ROOT}\n", "canonical decimal"),
        ("log\n5\nnot base64\n", "32 bytes"),
        (f"log\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"log\n5\n{URLSAFE_ROOT}\n", "32 bytes"),
    ],
)
def test_malformed_checkpoints_are_refused(body: str, message: str) -> None:
    with pytest.raises(MalformedCheckpointError, match=message):
        parse_checkpoint(body)


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [("", 1, ROOT), ("a b", 1, ROOT), ("a\nb", 1, ROOT), ("log", -1, ROOT), ("log", 1, b"x")],
)
def test_format_checkpoint_refuses_bad_values(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(MalformedCheckpointError):
        format_checkpoint(origin, size, root)


# --- PEM ------------------------------------------------------------------------------------------


def test_pem_round_trips() -> None:
    key = Ed25519PrivateKey.generate()
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert raw_public(private_key_from_pem(pem)) == raw_public(key)
    encrypted = private_key_to_pem(key, password=b"s3cret")
    assert b"ENCRYPTED" in encrypted
    assert raw_public(private_key_from_pem(encrypted, password=b"s3cret")) == raw_public(key)
    public_pem = public_key_to_pem(key.public_key())
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = public_key_from_pem(public_pem)
    assert loaded.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == raw_public(key)


def test_pem_refusals() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidKeyError, match="cannot load"):
        private_key_from_pem(private_key_to_pem(key, password=b"right"), password=b"wrong")
    with pytest.raises(InvalidKeyError, match="cannot load"):
        private_key_from_pem(b"not a pem")
    with pytest.raises(InvalidKeyError, match="cannot load"):
        public_key_from_pem(b"not a pem")
    other = ec.generate_private_key(ec.SECP256R1())
    other_pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidKeyError, match="Ed25519"):
        private_key_from_pem(other_pem)
    other_public = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidKeyError, match="Ed25519"):
        public_key_from_pem(other_public)


def test_a_verifier_key_of_the_wrong_length_is_refused() -> None:
    encoded = base64.b64decode(GO_VERIFIER_KEY.split("+", 2)[2]) + b"\x00"
    key_id = hashlib.sha256(b"PeterNeumann\n" + encoded).digest()[:4].hex()
    vkey = f"PeterNeumann+{key_id}+{base64.b64encode(encoded).decode()}"
    with pytest.raises(InvalidKeyError, match="Ed25519"):
        Verifier.from_verifier_key(vkey)


def test_a_truncated_signature_from_a_trusted_key_is_invalid(signer: Signer) -> None:
    note = signer.sign_note("hello\n")
    text, line = note.split("\n\n")
    name, encoded = line[2:-1].split(" ")
    short = base64.b64encode(base64.b64decode(encoded)[:-1]).decode()
    with pytest.raises(InvalidSignatureError):
        open_note(f"{text}\n\n\u2014 {name} {short}\n", [signer.verifier()])
