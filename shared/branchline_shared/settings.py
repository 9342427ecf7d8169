"""One settings object for every Branchline process (ADR-0009).

Read from environment variables prefixed ``BRANCHLINE_`` (and an optional ``.env``); the same
code runs on the embedded stack and in production. Built once, in a process's composition
root, never at import time.
"""

from __future__ import annotations

import secrets
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "secret", "change-me", "dev", ""}


class BranchlineSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRANCHLINE_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = "development"
    dev_mode: bool = Field(
        default=False,
        description="Enables the test clock and other dev-only endpoints; only the embedded "
        "dev stack (`branchline dev`) turns it on.",
    )
    data_dir: Path = Path(".branchline")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # PostgreSQL: one database per service (each service owns its data).
    intake_database_url: str = "postgresql://postgres@127.0.0.1:54329/branchline_intake"
    followup_database_url: str = "postgresql://postgres@127.0.0.1:54329/branchline_followup"
    audit_database_url: str = "postgresql://postgres@127.0.0.1:54329/branchline_audit"
    keys_database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:54329/branchline_keys",
        description="The clients' wrapped data keys (ADR-0007), shared by intake and followup.",
    )
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_namespace: str = Field(
        default="branchline",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Prefix of every topic and consumer group (tests use a uuid).",
    )
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    topic_retention_ms: int = -1
    kafka_idempotent_producer: bool = Field(
        default=False, description="Switch on where the broker supports it (Apache Kafka does)."
    )
    kafka_session_timeout_ms: int = 1000
    kafka_heartbeat_interval_ms: int = 200
    kafka_fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=5000,
        description="How long a consumer's empty fetch waits at the broker (latency of an "
        "idle pipeline; see docs/performance.md).",
    )

    # Outbox relay
    relay_enabled: bool = True
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(default=0.5, gt=0)
    reconcile_self_check_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="How often each consumer reconciles itself with the event stores and "
        "re-queues what it misses (0: only when it finds the broker's log reset; never: "
        "reconcile_self_repair = false).",
    )
    reconcile_self_repair: bool = True
    dead_letter_gauge_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often a consumer reads its dead-letter topic for the pending count "
        "and the oldest pending age on /metrics.",
    )
    reconcile_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="An event published this recently is in flight, not missing.",
    )

    # HTTP
    bind_host: str = "127.0.0.1"
    intake_port: int = 8001
    followup_port: int = 8002
    audit_port: int = 8003
    followup_worker_port: int = 8004
    audit_consumer_port: int = 8005
    intake_relay_port: int = 8006
    shutdown_drain_s: float = Field(
        default=2.0,
        ge=0,
        description="On SIGTERM, seconds /readyz answers 503 while requests are still served "
        "(so load balancers stop sending) before in-flight requests are finished and the "
        "service stops.",
    )
    shutdown_flush_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="On SIGTERM, how long the outbox relay may take to publish what is "
        "committed before it stops (what is left is published by the next relay).",
    )
    broker_port: int = 9092
    postgres_port: int = 54329
    max_body_bytes: int = Field(default=2_000_000, ge=1024)

    # HTTP hardening (docs/access-control.md, "Abuse limits")
    rate_limit_enabled: bool = Field(
        default=True, description="Per-token and per-address rate limits (off for benchmarks)."
    )
    rate_limit_token_per_s: float = Field(default=100.0, gt=0)
    rate_limit_token_burst: int = Field(default=400, ge=1)
    rate_limit_address_per_s: float = Field(default=300.0, gt=0)
    rate_limit_address_burst: int = Field(default=1000, ge=1)
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="A request not answered (headers) by then is a 503."
    )
    max_query_params: int = Field(default=30, ge=1)
    max_query_bytes: int = Field(default=2048, ge=64)
    access_log_enabled: bool = Field(
        default=True, description="One JSON line per request (who, route, status, latency)."
    )
    audit_max_concurrent_exports: int = Field(
        default=2, ge=1, description="More concurrent audit exports are refused (429)."
    )
    max_header_bytes: int = Field(default=32_768, ge=4096, le=1_048_576)
    """Request line plus headers of one request; more is refused with 431 before it is read
    whole (docs/input-validation.md)."""

    # Auth: JWT (docs/access-control.md). HS256 by default, with the secret generated into
    # data_dir on the embedded stack; EdDSA or RS256 for production (public keys only on the
    # services, the private key where tokens are issued).
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "branchline"
    jwt_audience: str = Field(
        default="branchline",
        pattern=r"^[A-Za-z0-9._:/-]{1,100}$",
        description="Prefix of the services' audiences: each service accepts only tokens "
        "naming `<prefix>:<service>` (intake, followup, audit) in `aud`.",
    )
    jwt_algorithm: Literal["HS256", "EdDSA", "RS256"] = "HS256"
    jwt_key_id: str = Field(
        default="k1",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="`kid` of the signing key (HS256: jwt_secret; EdDSA/RS256: the private key).",
    )
    jwt_verification_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="More verification keys by kid, JSON: HS256 secrets or PEM public keys "
        "(EdDSA/RS256). Key rotation: add the new key, sign with it, drop the old one once "
        "its tokens have expired.",
    )
    jwt_private_key_file: Path | None = Field(
        default=None,
        description="EdDSA/RS256 signing key (PEM) where tokens are issued; development "
        "generates <data_dir>/secrets/jwt-signing-key.pem.",
    )
    jwt_max_lifetime_hours: float = Field(
        default=12.0, gt=0, le=24 * 31, description="Tokens living longer (exp - iat) are refused."
    )

    # Personal data (ADR-0007): the master key wrapping every client's data key, base64 of
    # 32 bytes. On the embedded stack it is generated into the data folder on first run.
    master_key: SecretStr | None = None
    master_keys_previous: list[SecretStr] = Field(
        default_factory=list,
        description="Master keys being rotated away from (JSON list of base64), still accepted "
        "to unwrap data keys until `branchline privacy rotate-master-key` re-wrapped them all.",
    )
    privacy_legal_holds_url: str | None = Field(
        default=None,
        description="The audit API's standing legal holds (GET /v1/audit/legal-holds), asked "
        "before any personal data is destroyed (D-11); default: the audit API on loopback at "
        "audit_port. Unreachable: nothing is destroyed that round.",
    )
    privacy_shred_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often the followup worker shreds clients whose erasure is due (D-04).",
    )

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> BranchlineSettings:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if self.jwt_algorithm == "HS256" and (
                secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 32
            ):
                raise ValueError(
                    "BRANCHLINE_JWT_SECRET must be set to a random value of at least 32 "
                    "characters in production"
                )
            if (
                self.jwt_algorithm != "HS256"
                and not self.jwt_verification_keys
                and self.jwt_private_key_file is None
            ):
                raise ValueError(
                    "BRANCHLINE_JWT_VERIFICATION_KEYS (public keys by kid) must be set for "
                    f"{self.jwt_algorithm} in production"
                )
            if self.dev_mode:
                raise ValueError("BRANCHLINE_DEV_MODE must be false in production")
            if self.master_key is None:
                raise ValueError("BRANCHLINE_MASTER_KEY must be set in production")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def jwt_secret_file(self) -> Path:
        return self.data_dir / "secrets" / "jwt-secret"

    def resolved_jwt_secret(self) -> str:
        """The signing secret: from settings, or (development) from the data folder,
        generated there on first use."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.jwt_secret_file
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value

    # --- intake: the numbers of the standard's rules (docs/rules.md defaults) ---
    intake_assessment_validity_months: int = Field(
        default=12, ge=1, description="D-05: validity of a risk assessment without valid_until."
    )
    intake_new_client_days: int = Field(
        default=90, ge=1, description="D-09: a client is `new` this long after onboarding."
    )
    intake_churn_after_days: int = Field(
        default=365, ge=1, description="D-09: `churned` after this long without business."
    )
    intake_high_net_worth_threshold: int = Field(
        default=6_000_000, gt=0, description="D-09: assets under management for high_net_worth."
    )
    intake_identity_gate_methods: list[str] = Field(
        default_factory=lambda: ["networked_id_check"],
        min_length=1,
        description="D-03: identity verification methods that open the gate for account "
        "opening, sales and contracts (networked_id_check, in_person, video), JSON.",
    )
    intake_screening_required: bool = Field(
        default=True, description="D-03: an account opening or sale needs a clear screening."
    )
    intake_clock_skew_seconds: float = Field(
        default=300, ge=0, description="D-05b: how far occurred_at may lie after receipt."
    )
    intake_late_entry_window_hours: float = Field(
        default=24,
        gt=0,
        description="D-05b: how far before receipt occurred_at may lie without late_entry.",
    )

    # --- intake: throughput (docs/performance.md) ---
    intake_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Intake API processes sharing its port (0: one per core); one of them "
        "runs the outbox relay at a time.",
    )
    intake_group_commit_writers: int = Field(
        default=2,
        ge=0,
        le=16,
        description="Group commit of POST /v1/events: groups written at once per process "
        "(0: every request is its own transaction).",
    )
    intake_group_commit_max_events: int = Field(
        default=500, ge=1, le=10_000, description="Most events in one group commit."
    )
    intake_group_commit_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="How long a group waits for more requests before it is written (0: it is "
        "written at once, and whoever arrives meanwhile joins the next group).",
    )

    def resolved_master_key(self) -> bytes:
        """The 32-byte master key: from settings, or (development) from the data folder."""
        import base64

        if self.master_key is not None:
            raw = base64.b64decode(self.master_key.get_secret_value())
        else:
            path = self.data_dir / "secrets" / "master-key"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
                path.chmod(0o600)
            raw = base64.b64decode(path.read_text().strip())
        if len(raw) != 32:
            raise ValueError("the master key must be base64 of exactly 32 bytes")
        return raw

    def topic(self, name: str) -> str:
        return f"{self.topic_namespace}.{name}"

    # --- audit (issue 6) ---
    audit_log_origin: str = Field(
        default="branchline.dev/audit",
        pattern=r"^[^\s+]+$",
        description="Origin line of the audit checkpoints and name of the signing key "
        "(C2SP tlog-checkpoint / signed note; no spaces, no '+').",
    )
    audit_signing_key_file: Path | None = Field(
        default=None,
        description="The checkpoint signing key (Go signer-key form, PRIVATE+KEY+...). Default: "
        "<data_dir>/secrets/audit-signing-key, generated on first run in development only.",
    )
    audit_checkpoint_every_entries: int = Field(
        default=1000, ge=1, description="Sign a checkpoint once this many entries are unsigned."
    )
    audit_checkpoint_interval_s: float = Field(
        default=60.0, gt=0, description="...or once the oldest unsigned entry is this old."
    )
    audit_retention_profile: str = Field(
        default="default", description="The institution's retention profile (D-11)."
    )
    audit_retention_years: dict[str, int] = Field(
        default_factory=lambda: {
            "default": 10,
            "cn_aml": 10,
            "us_sec_17a4": 6,
            "eu_mifid_ii": 5,
        },
        description="Retention period in years per profile (D-11; default 10 years).",
    )
    audit_branch_retention_profiles: dict[str, str] = Field(
        default_factory=dict, description="Branch id -> retention profile, where it differs."
    )
    audit_legal_hold_clients: list[str] = Field(
        default_factory=list,
        description="Migration aid only: `branchline audit holds import-settings` records a "
        "legal hold for each listed client; retention reads only recorded holds (D-11).",
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

    # --- followup (issue 5) ---
    followup_default_profile: str = Field(
        default="default",
        description="D-07 jurisdiction profile of branches not in followup_branch_profiles "
        "(default, cn_regulator, uk_fca_disp, us_broker).",
    )
    followup_branch_profiles: dict[str, str] = Field(
        default_factory=dict, description="Branch id -> jurisdiction profile (D-07), JSON."
    )
    followup_default_timezone: str = Field(
        default="UTC", description="IANA zone of the business-day calendar (D-07)."
    )
    followup_branch_timezones: dict[str, str] = Field(
        default_factory=dict, description="Branch id -> IANA zone, where it differs, JSON."
    )
    followup_holidays: list[date] = Field(
        default_factory=list, description="Non-business days of every branch (D-07), JSON."
    )
    followup_branch_holidays: dict[str, list[date]] = Field(
        default_factory=dict, description="Branch id -> its own non-business days, JSON."
    )
    followup_supervisors: dict[str, str] = Field(
        default_factory=dict,
        description="Staff (RM) id -> supervisor id, JSON: who receives escalations (D-08).",
    )
    followup_default_supervisor: str = Field(
        default="supervisor", description="Supervisor of staff not in followup_supervisors."
    )
    followup_escalate_after_hours: float | None = Field(
        default=24.0, ge=0, description="D-08: escalate this long after due; null: never."
    )
    followup_due_soon_hours: float = Field(
        default=4.0, ge=0, description="sla_state is due_soon this long before due_at."
    )
    followup_feedback_low_score: int = Field(
        default=60,
        ge=0,
        le=101,
        description="D-07: a survey with any dimension below this score needs a response.",
    )
    followup_durations_s: dict[str, float] = Field(
        default_factory=dict,
        description="Overrides of the rules' deadlines in seconds, JSON, by FollowupPolicy "
        "name: survey_within, appointment_preparation_lead, online_consultation_response, "
        "offline_consultation_response, complaint_follow_up_after, new_client_first_revisit, "
        "win_back_within, product_review_every.",
    )
    followup_revisit_cadence_days: dict[str, float | None] = Field(
        default_factory=dict,
        description="D-08 revisit cadence in days by lifecycle stage, JSON (e.g. "
        '{"high_net_worth": 30, "mature": 90}); null: no periodic revisit.',
    )
    followup_access_request_days: float = Field(
        default=15, gt=0, description="D-04: an access request is answered within this."
    )
    followup_access_request_days_by_profile: dict[str, float] = Field(
        default_factory=dict,
        description="D-04 access-request deadline in days per jurisdiction profile, JSON.",
    )
    followup_privacy_officer: str = Field(
        default="privacy-officer", description="Assignee of access-request tasks (D-04)."
    )
    followup_kyc_refresh_months: dict[str, int] = Field(
        default_factory=dict,
        description="D-03: months between due diligence and its refresh by risk level, JSON "
        '(default {"low": 36, "medium": 36, "high": 12, "very_high": 12}).',
    )
    followup_gift_threshold: Decimal = Field(
        default=Decimal(0), ge=0, description="D-16: accepted gifts above this value escalate."
    )
    followup_training_hours_per_year: Decimal = Field(
        default=Decimal(40), ge=0, description="D-14: training reference (D-12 shortfalls)."
    )
    followup_timer_poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the timer runner looks for due timers."
    )
    followup_timer_batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Timers claimed per transaction."
    )

    # --- web console (docs/console.md) ---
    console_followup_url: str | None = Field(
        default=None,
        description="Public address of the followup console (RM and supervisor pages); "
        "default: http://<bind_host>:<followup_port>/console.",
    )
    console_audit_url: str | None = Field(
        default=None,
        description="Public address of the audit console (auditor pages, refusals); "
        "default: http://<bind_host>:<audit_port>/console.",
    )
