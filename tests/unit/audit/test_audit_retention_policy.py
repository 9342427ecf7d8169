"""Retention profiles and legal holds (D-11)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from branchline_audit.domain.records import position_ranges
from branchline_audit.domain.retention import RetentionError, RetentionPolicy, years_before

pytestmark = pytest.mark.unit

NOW = datetime(2036, 3, 1, tzinfo=UTC)
POLICY = RetentionPolicy(
    years_by_profile={"default": 10, "eu_mifid_ii": 5, "us_sec_17a4": 6},
    branch_profiles={"BR-EU": "eu_mifid_ii"},
)


def test_default_is_ten_years_and_branches_follow_their_profile() -> None:
    assert POLICY.cutoff("default", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert POLICY.profile_for("BR-EU") == "eu_mifid_ii"
    assert POLICY.profile_for("BR-X") == "default"
    just_kept = datetime(2026, 3, 1, tzinfo=UTC)
    assert not POLICY.expired(appended_at=just_kept, branch_id="BR-X", now=NOW)
    assert POLICY.expired(appended_at=just_kept, branch_id="BR-EU", now=NOW)


def test_leap_days() -> None:
    assert years_before(datetime(2028, 2, 29, tzinfo=UTC), 10) == datetime(2018, 2, 28, tzinfo=UTC)


def test_d11_a_client_record_counts_from_the_end_of_the_relationship() -> None:
    # registered long ago and still a client: never expired
    assert not POLICY.client_record_expired(relationship_end=None, branch_id="BR-X", now=NOW)
    ended = datetime(2026, 2, 28, tzinfo=UTC)  # 10 years and a day before NOW
    assert POLICY.client_record_expired(relationship_end=ended, branch_id="BR-X", now=NOW)
    recent = datetime(2031, 3, 1, tzinfo=UTC)  # 5 years ago: past MiFID II only
    assert not POLICY.client_record_expired(relationship_end=recent, branch_id="BR-X", now=NOW)
    assert POLICY.client_record_expired(
        relationship_end=datetime(2031, 2, 28, tzinfo=UTC), branch_id="BR-EU", now=NOW
    )


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(RetentionError, match="no period"):
        RetentionPolicy(years_by_profile={"default": 10}, branch_profiles={"B": "nope"})


def test_positions_are_named_as_runs() -> None:
    assert position_ranges([5, 1, 2, 3, 9, 10]) == [[1, 3], [5, 5], [9, 10]]
