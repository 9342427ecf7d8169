"""Settings: defaults of docs/rules.md, production refuses placeholders, secrets generated once."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from branchline_intake.domain_seam import intake_policy
from branchline_shared.settings import BranchlineSettings

pytestmark = pytest.mark.unit


def test_rule_numbers_come_from_settings() -> None:
    policy = intake_policy(
        BranchlineSettings(intake_assessment_validity_months=6, intake_churn_after_days=200)
    )
    assert policy.assessment_validity_months == 6
    assert policy.churn_after == timedelta(days=200)
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


def test_development_secrets_are_generated_once_into_the_data_folder(tmp_path: Path) -> None:
    settings = BranchlineSettings(data_dir=tmp_path)
    assert settings.resolved_jwt_secret() == settings.resolved_jwt_secret()
    assert settings.resolved_master_key() == settings.resolved_master_key()
    assert len(settings.resolved_master_key()) == 32
    assert (tmp_path / "secrets" / "master-key").stat().st_mode & 0o077 == 0


def test_a_master_key_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    settings = BranchlineSettings(
        data_dir=tmp_path, master_key=base64.b64encode(b"x" * 16).decode()
    )
    with pytest.raises(ValueError, match="32 bytes"):
        settings.resolved_master_key()
