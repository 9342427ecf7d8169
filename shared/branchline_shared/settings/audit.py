"""The audit service's settings: the signed log, its checkpoints and its database roles."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from branchline_shared.settings.sections import CalendarSettings, RetentionSettings


class AuditSettings(CalendarSettings, RetentionSettings):
    """What the audit API and the audit consumer read."""

    audit_max_concurrent_exports: int = Field(
        default=2, ge=1, description="More concurrent audit exports are refused (429)."
    )
    audit_consumer_batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Events the audit consumer fetches and writes to the ledger in one "
        "transaction at most (#12).",
    )
    audit_consumer_stop_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long the audit consumer may take to stop (finish the batch in hand, "
        "commit it, leave its group) before it is cancelled; what it had not committed is "
        "redelivered and recognised (effectively once, ADR-0003). The audit consumer's "
        "counterpart of followup_worker_stop_timeout_s (#12).",
    )
    audit_consumer_gc_young_threshold: int = Field(
        default=20_000,
        ge=700,
        le=1_000_000,
        description="Net new container objects between two young-generation collections of "
        "the audit consumer (CPython's default: 700, the least accepted): a batch's messages "
        "and events live until its append commits, so fewer young collections walk them "
        '(docs/performance.md, Round 13, "...the audit consumer\'s young generation", #12).',
    )
    audit_max_concurrent_verifies: int = Field(
        default=1,
        ge=1,
        le=16,
        description="`GET /v1/audit/verify`s running at once across every audit API process "
        "and host on the same audit database (each reads the whole ledger in processes of its "
        "own); one more is refused (429). Held as PostgreSQL advisory locks (#12).",
    )
    audit_verify_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes `branchline audit verify` checks the ledger in, each a range "
        "of positions joined at their boundaries (#12). 0, the default: automatic, one per "
        "core (at most 8) for a ledger of at least `audit_verify_parallel_min_entries` "
        "entries, one pass below; 1: one pass; N: N processes whatever the ledger's size.",
    )
    audit_verify_parallel_min_entries: int = Field(
        default=500_000,
        ge=1,
        description="The automatic choice verifies smaller ledgers in one pass: a command's "
        "first verify pays the processes' start (a fork server importing the verifier), more "
        "than they save below this size on two cores (docs/performance.md, Round 15, #12).",
    )
    audit_log_origin: str = Field(
        default="branchline.dev/audit",
        pattern=r"^[^\s+]+$",
        description="Origin line of the audit checkpoints and name of the signing key "
        "(C2SP tlog-checkpoint / signed note; no spaces, no '+').",
    )
    audit_signing_key_file: Path | None = Field(
        default=None,
        description="The checkpoint signing key (Go signer-key form, PRIVATE+KEY+...). Default: "
        "<data_dir>/secrets/audit-signing-key, which the dev stack generates.",
    )
    audit_checkpoint_every_entries: int = Field(
        default=1000, ge=1, description="Sign a checkpoint once this many entries are unsigned."
    )
    audit_checkpoint_interval_s: float = Field(
        default=60.0, gt=0, description="...or once the oldest unsigned entry is this old."
    )
    audit_stored_form_roles: list[str] = Field(
        default_factory=list,
        description="Roles that see personal fields in their stored (encrypted) form in the "
        "audit API; everyone else sees them masked (D-04, D-11).",
    )
    audit_db_owner_role: str = Field(
        default="branchline_audit_owner", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )
    audit_db_writer_role: str = Field(
        default="branchline_audit_writer", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )
    audit_db_pruner_role: str = Field(
        default="branchline_audit_pruner", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )
    audit_db_provision: bool = Field(
        default=True,
        description="Create the audit roles and grants at start (needs a superuser or "
        "CREATEROLE connection); production operators may provision them instead.",
    )

    @property
    def audit_signing_key_path(self) -> Path:
        """The configured signing key file, or the dev stack's."""
        return self.audit_signing_key_file or self.secrets_dir / "audit-signing-key"
