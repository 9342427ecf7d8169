"""What the audit use cases work with, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from branchline_audit.application.ports import AuditCheckpoints, AuditLedger
from branchline_audit.domain.note import Checkpoint, Signer
from branchline_audit.domain.personal import PersonalDataPolicy
from branchline_shared.clock import Clock


@dataclass(frozen=True)
class TrailReader:
    """Who reads the trail and why (D-11: recorded with every read)."""

    subject: str
    roles: frozenset[str]
    purpose: str | None = None


@dataclass(frozen=True)
class AuditContext:
    ledger: AuditLedger
    checkpoints: AuditCheckpoints
    signer: Signer
    clock: Clock
    policy: PersonalDataPolicy = field(default_factory=PersonalDataPolicy)
    checkpoint_every: int = 1000
    checkpoint_interval_s: float = 60.0
    signed_leaves: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)
    """The last leaf (entry hash) of each signed checkpoint this process has proven against
    its signed root, by tree size (``application/signed_leaves.py``, Round 28): a read
    compares the stored hash it read with it; about 100 bytes per checkpoint."""
    refusal_pairs: dict[int, tuple[int | None, int]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """By refused checkpoint size, the pair of signed checkpoints a refusal last located the
    rewrite between (the last that holds, None when none did, and the next, which does not):
    checked again at every refusal instead of halving every checkpoint (#12, Round 34)."""
    opened_notes: dict[str, Checkpoint | str] = field(
        default_factory=dict, compare=False, repr=False
    )
    """The checkpoint notes this process opened with the log's key (the checkpoint, or why
    its note does not hold), by note text, the last ``signed_leaves.OPENED_NOTES``: a refused
    checkpoint's failing proof checks the signature once, not every round (#12, Round 35)."""

    @property
    def origin(self) -> str:
        """The log's origin is the signing key's name (C2SP tlog-checkpoint convention)."""
        return self.signer.name
