"""The one format of an encrypted personal value, and the pure operations on it.

A sealed value is a string, so it fits wherever the clear string stood in a payload::

    bl:pii:v1:<key id>:<base64url nonce>:<base64url ciphertext with GCM tag>

- cipher: AES-256-GCM with the client's data key, a fresh 96-bit nonce per value;
- associated data: ``"<client id>\\x00<payload key>\\x00<sub key>"``, so a sealed value cannot
  be moved to another client or another field and still open;
- the key id names the client's data key (a client may have more than one after rotation).

Hashes in the audit chain cover these strings, not the clear values: destroying the client's
key leaves every hash verifiable while the data becomes unreadable (crypto-shredding).
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "bl:pii:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12


class SealingError(ValueError):
    """A sealed value that does not open: wrong key, wrong place, or altered."""


@dataclass(frozen=True)
class DataKey:
    """A client's data key, in clear: only ever in memory, never stored or logged."""

    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes (AES-256)")

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r}, secret=<hidden>)"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(client_id: str, path: str, sub_key: str) -> bytes:
    return f"{client_id}\x00{path}\x00{sub_key}".encode()


def is_sealed(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(PREFIX)


def seal(value: str, key: DataKey, *, client_id: str, path: str, sub_key: str = "") -> str:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key.secret).encrypt(nonce, value.encode(), _aad(client_id, path, sub_key))
    return f"{PREFIX}{key.key_id}:{_b64(nonce)}:{_b64(ciphertext)}"


def key_id_of(sealed: str) -> str:
    if not is_sealed(sealed):
        raise SealingError("not a sealed value")
    return sealed[len(PREFIX) :].split(":", 1)[0]


def unseal(sealed: str, key: DataKey, *, client_id: str, path: str, sub_key: str = "") -> str:
    if not is_sealed(sealed):
        raise SealingError("not a sealed value")
    try:
        key_id, nonce, ciphertext = sealed[len(PREFIX) :].split(":")
    except ValueError:
        raise SealingError("malformed sealed value") from None
    if key_id != key.key_id:
        raise SealingError(f"sealed with key {key_id}, not {key.key_id}")
    try:
        clear = AESGCM(key.secret).decrypt(
            _unb64(nonce), _unb64(ciphertext), _aad(client_id, path, sub_key)
        )
    except (InvalidTag, ValueError):
        raise SealingError("the sealed value does not open with this key here") from None
    return clear.decode()


Leaf = Callable[[Any, str], Any]
"""``(value under a personal path, the path) -> replacement``."""


def map_personal(data: Mapping[str, Any], paths: tuple[str, ...], leaf: Leaf) -> dict[str, Any]:
    """A copy of ``data`` with the value under each personal path replaced by ``leaf(value,
    path)``. A path is a key of ``data`` or, dotted, a key inside an object (``a.b``: the key
    ``b`` of the object under ``a``); absent and null values are left alone."""
    out = dict(data)
    for path in paths:
        _replace(out, path.split("."), path, leaf)
    return out


def _replace(container: dict[str, Any], keys: list[str], path: str, leaf: Leaf) -> None:
    head, rest = keys[0], keys[1:]
    value = container.get(head)
    if value is None:
        return
    if rest:
        if isinstance(value, Mapping):
            inner = dict(value)
            _replace(inner, rest, path, leaf)
            container[head] = inner
        return
    container[head] = leaf(value, path)


def _each_string(value: Any, path: str, one: Callable[[str, str, str], str]) -> Any:
    """``one(text, path, sub_key)`` on a string, on each string value of an object (sub key:
    its key, which stays readable) or each string item of a list (sub key: its index)."""
    if isinstance(value, str):
        return one(value, path, "")
    if isinstance(value, Mapping):
        return {k: one(v, path, k) if isinstance(v, str) else v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [one(v, path, str(i)) if isinstance(v, str) else v for i, v in enumerate(value)]
    return value


def seal_paths(
    data: Mapping[str, Any], paths: tuple[str, ...], key: DataKey, *, client_id: str
) -> dict[str, Any]:
    """A copy of ``data`` whose personal values (under ``paths``) are sealed. Under an object
    the keys stay readable (which fields were recorded) and each string value is sealed; in a
    list each string item is. A value that already looks sealed is refused: only Branchline
    seals, so a caller's "sealed" value would be personal data in clear, never shredded."""

    def one(text: str, path: str, sub_key: str) -> str:
        if PREFIX in text:
            raise SealingError(f"{path}: a value to seal holds the reserved prefix {PREFIX!r}")
        return seal(text, key, client_id=client_id, path=path, sub_key=sub_key)

    return map_personal(data, paths, lambda value, path: _each_string(value, path, one))


def unseal_paths(
    data: Mapping[str, Any], paths: tuple[str, ...], key: DataKey, *, client_id: str
) -> dict[str, Any]:
    def one(text: str, path: str, sub_key: str) -> str:
        if not is_sealed(text):
            return text
        return unseal(text, key, client_id=client_id, path=path, sub_key=sub_key)

    return map_personal(data, paths, lambda value, path: _each_string(value, path, one))


class MasterKey:
    """Wraps and unwraps data keys (AES-256-GCM, the client id as associated data).

    ``key_id`` names the key without revealing it (a keyed digest of the secret), so a wrapped
    data key can say which master key wrapped it while two are configured during a rotation."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError("the master key is 32 bytes (AES-256)")
        self._aead = AESGCM(secret)
        self.key_id = hmac.new(secret, b"branchline master key id v1", "sha256").hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r}, secret=<hidden>)"

    def wrap(self, key: DataKey, client_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key.secret, client_id.encode())

    def unwrap(self, wrapped: bytes, key_id: str, client_id: str) -> DataKey:
        try:
            secret = self._aead.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], client_id.encode()
            )
        except InvalidTag:
            raise SealingError(
                f"data key of {client_id} does not unwrap: wrong master key?"
            ) from None
        return DataKey(key_id, secret)


def new_data_key() -> DataKey:
    return DataKey(_b64(os.urandom(6)), AESGCM.generate_key(bit_length=256))
