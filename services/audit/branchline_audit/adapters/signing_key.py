"""The log's Ed25519 signing key, read from a file.

The file holds the key in Go's signer-key form (``PRIVATE+KEY+<name>+<id>+<base64>``, the form
``golang.org/x/mod/sumdb/note`` tools read). Production must provide the file (a mounted secret);
on the embedded stack the dev stack creates it (:func:`create_signing_key`) before the audit
processes start. Loading never creates a key: a fresh key would silently give the log a new
identity.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from branchline_audit.domain.note import Signer
from branchline_shared.settings import AuditSettings


class SigningKeyError(RuntimeError):
    pass


def signing_key_path(settings: AuditSettings) -> Path:
    return settings.audit_signing_key_path


def load_signer(settings: AuditSettings) -> Signer:
    path = signing_key_path(settings)
    if not path.exists():
        raise SigningKeyError(
            f"the audit signing key {path} does not exist: set "
            "BRANCHLINE_AUDIT_SIGNING_KEY_FILE to name the log's key (`branchline audit "
            "keygen` creates one), or start the embedded stack (`branchline dev`)"
        )
    signer = Signer.from_signer_key(path.read_text(encoding="ascii").strip())
    if signer.name != settings.audit_log_origin:
        raise SigningKeyError(
            f"the signing key in {path} is named {signer.name!r}, but the log's origin is "
            f"{settings.audit_log_origin!r}"
        )
    return signer


def create_signing_key(settings: AuditSettings) -> bool:
    """Create the log's key where the settings look for it, unless it exists (dev stack).

    Returns whether it was created.
    """
    path = signing_key_path(settings)
    if path.exists():
        return False
    return _create(path, Signer.generate(settings.audit_log_origin))


def _create(path: Path, signer: Signer) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write a private temporary file, then link it into place: link fails if the key exists,
    # so when two processes create it at once one key wins and both read it.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (signer.signer_key_string() + "\n").encode("ascii"))
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
            return True
        return False
    finally:
        temporary.unlink(missing_ok=True)
