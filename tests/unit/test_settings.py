"""Settings: defaults of docs/rules.md, production refuses placeholders, reading writes nothing
(the dev stack generates the development secrets), one class per service, former names read."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from branchline_cli.dev_secrets import DevSecretsError, provision_dev_secrets
from branchline_followup.application.config import policy_from_settings
from branchline_intake.domain_seam import intake_policy
from branchline_shared.settings import (
    FORMER_NAMES,
    AuditSettings,
    BranchlineSettings,
    CommonSettings,
    FollowupSettings,
    IntakeSettings,
    MissingSecretError,
)

pytestmark = pytest.mark.unit


def test_rule_numbers_come_from_settings() -> None:
    settings = BranchlineSettings(assessment_validity_months=6, lifecycle_churn_after_days=200)
    assert intake_policy(settings).assessment_validity_months == 6
    # D-09's numbers reach the one place that derives the stage: followup's policy.
    assert policy_from_settings(settings).churn_after_inactivity == timedelta(days=200)
    assert intake_policy(BranchlineSettings()).assessment_validity_months == 12  # D-05 default


@pytest.mark.parametrize("secret", ["changeme", "short", ""])
def test_production_refuses_placeholder_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        BranchlineSettings(environment="production", dev_mode=False, jwt_secret=secret)


def test_production_refuses_dev_mode_and_a_missing_master_key() -> None:
    good = "s" * 40
    with pytest.raises(ValidationError, match="DEV_MODE"):
        BranchlineSettings(environment="production", dev_mode=True, jwt_secret=good)
    with pytest.raises(ValidationError, match="MASTER_KEY"):
        BranchlineSettings(environment="production", dev_mode=False, jwt_secret=good)


def test_reading_settings_writes_nothing(tmp_path: Path) -> None:
    settings = BranchlineSettings(data_dir=tmp_path)
    with pytest.raises(MissingSecretError, match="branchline dev"):
        settings.resolved_jwt_secret()
    with pytest.raises(MissingSecretError, match="BRANCHLINE_MASTER_KEY"):
        settings.resolved_master_key()
    assert not any(tmp_path.iterdir())


def test_the_dev_stack_generates_the_development_secrets_once(tmp_path: Path) -> None:
    settings = BranchlineSettings(data_dir=tmp_path)
    created = provision_dev_secrets(settings)
    assert {p.name for p in created} == {"jwt-secret", "master-key", "audit-signing-key"}
    secret, master = settings.resolved_jwt_secret(), settings.resolved_master_key()
    assert provision_dev_secrets(settings) == []  # once: a second start keeps the keys
    assert (settings.resolved_jwt_secret(), settings.resolved_master_key()) == (secret, master)
    assert len(master) == 32
    for path in created:
        assert path.stat().st_mode & 0o077 == 0


def test_the_dev_stack_generates_no_production_secret(tmp_path: Path) -> None:
    settings = BranchlineSettings(
        data_dir=tmp_path,
        environment="production",
        jwt_secret="s" * 40,
        master_key=base64.b64encode(b"k" * 32).decode(),
    )
    with pytest.raises(DevSecretsError):
        provision_dev_secrets(settings)


def test_a_master_key_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    settings = BranchlineSettings(
        data_dir=tmp_path, master_key=base64.b64encode(b"x" * 16).decode()
    )
    with pytest.raises(ValueError, match="32 bytes"):
        settings.resolved_master_key()


def test_each_service_reads_only_its_own_settings() -> None:
    # Beyond the common part (where every service is: its database, its port), a service's
    # class holds its own knobs and the sections named for what they configure.
    common = set(CommonSettings.model_fields)
    intake, followup, audit = (
        set(cls.model_fields) - common for cls in (IntakeSettings, FollowupSettings, AuditSettings)
    )
    assert not {f for f in intake | audit if f.startswith("followup_")}
    assert not {f for f in followup | audit if f.startswith("intake_")}
    assert not {f for f in intake | followup if f.startswith("audit_")}
    assert "assessment_validity_months" in intake & followup  # D-05: one number, two readers
    assert "retention_years" in audit & followup  # D-11
    assert set(BranchlineSettings.model_fields) >= common | intake | followup | audit


def test_former_names_still_configure_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRANCHLINE_INTAKE_NEW_CLIENT_DAYS", "30")
    monkeypatch.setenv("BRANCHLINE_FOLLOWUP_SUPERVISORS", '{"rm-1": "sup-1"}')
    monkeypatch.setenv("BRANCHLINE_AUDIT_RETENTION_YEARS", '{"default": 7}')
    settings = BranchlineSettings()
    assert settings.lifecycle_new_client_days == 30
    assert settings.staff_supervisors == {"rm-1": "sup-1"}
    assert settings.retention_years == {"default": 7}
    # A keyword wins over the environment, under the former name as under the current one.
    assert BranchlineSettings(intake_new_client_days=40).lifecycle_new_client_days == 40
    assert BranchlineSettings(lifecycle_new_client_days=50).lifecycle_new_client_days == 50
    monkeypatch.setenv("BRANCHLINE_LIFECYCLE_NEW_CLIENT_DAYS", "60")
    assert BranchlineSettings().lifecycle_new_client_days == 60  # the current name first
    assert set(FORMER_NAMES.values()) <= set(BranchlineSettings.model_fields)


def test_a_retention_profile_without_a_period_is_refused() -> None:
    with pytest.raises(ValidationError, match="eu_mifid_ii"):
        AuditSettings(
            retention_years={"default": 10}, retention_branch_profiles={"B": "eu_mifid_ii"}
        )


def test_the_consumers_batch_sizes_are_bounded_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # #12: events per transaction of the followup worker and the audit consumer; the defaults
    # are the former constants (200, 500).
    assert FollowupSettings().followup_worker_batch_size == 200
    assert AuditSettings().audit_consumer_batch_size == 500
    monkeypatch.setenv("BRANCHLINE_FOLLOWUP_WORKER_BATCH_SIZE", "50")
    monkeypatch.setenv("BRANCHLINE_AUDIT_CONSUMER_BATCH_SIZE", "2000")
    settings = BranchlineSettings()
    assert (settings.followup_worker_batch_size, settings.audit_consumer_batch_size) == (50, 2000)
    # while behind (#12, Round 27): larger, as bounded
    assert FollowupSettings().followup_worker_batch_size_behind == 1000
    monkeypatch.setenv("BRANCHLINE_FOLLOWUP_WORKER_BATCH_SIZE_BEHIND", "400")
    assert BranchlineSettings().followup_worker_batch_size_behind == 400
    names = ("followup_worker_batch_size", "followup_worker_batch_size_behind")
    for name in (*names, "audit_consumer_batch_size"):
        for refused in (0, 10_001):
            with pytest.raises(ValidationError, match=name):
                BranchlineSettings.model_validate({name: refused})


def test_the_consumers_fetch_wait_is_bounded_and_never_zero() -> None:
    # #12: the dev broker (tansu) answers a fetch with max_wait 0 without any record, even
    # when records are there (docs/dev-stack.md), so 0 would starve both consumers.
    assert CommonSettings().kafka_fetch_max_wait_ms == 50
    assert BranchlineSettings(kafka_fetch_max_wait_ms=1).kafka_fetch_max_wait_ms == 1
    for refused in (0, 5_001):
        with pytest.raises(ValidationError, match="kafka_fetch_max_wait_ms"):
            BranchlineSettings.model_validate({"kafka_fetch_max_wait_ms": refused})
