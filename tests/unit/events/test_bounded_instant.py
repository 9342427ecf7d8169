"""An instant's refusals keep their kinds with the RFC 3339 pattern matched first (#12): a
string that is not RFC 3339 is refused as naive when it is a date-time without an offset, and
as badly formatted otherwise, as when the naive pattern was matched first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from branchline_shared.events.bounded import _NAIVE, _RFC3339, Instant

pytestmark = pytest.mark.unit

INSTANT: TypeAdapter[object] = TypeAdapter(Instant)

strings = st.builds(
    lambda date, time, fraction, suffix: f"{date}{time}{fraction}{suffix}",
    st.sampled_from(["2026-11-22", "2026-13-40", "26-11-22", "2026-11-22 "]),
    st.sampled_from(["T09:00:00", "t09:00:00", "T9:00:00", " 09:00:00", "T09:00"]),
    st.sampled_from(["", ".5", ".123456", ".1234567", ".", ".x"]),
    st.sampled_from(
        ["", "Z", "z", "+08:00", "-14:00", "+15:00", "+0800", "\n", "Z\n", " ", "Zx", "+08:00\n"]
    ),
) | st.text(max_size=40)


def kind_before(value: str) -> str | None:
    """The refusal the naive pattern matched first gave (None: a later check decides)."""
    if _NAIVE.match(value):
        return "timezone_aware"
    if not _RFC3339.match(value):
        return "datetime_format"
    return None


@settings(max_examples=500, deadline=None)
@given(value=strings)
def test_an_instant_is_refused_for_the_same_reason(value: str) -> None:
    expected = kind_before(value)
    try:
        INSTANT.validate_python(value)
    except ValidationError as error:
        kind = error.errors()[0]["type"]
        if expected is None:
            assert kind not in ("timezone_aware", "datetime_format")
        else:
            assert kind == expected
    else:
        assert expected is None


def test_the_usual_refusals() -> None:
    for value, kind in (
        ("2026-11-22T09:00:00", "timezone_aware"),
        ("2026-11-22T09:00:00.5\n", "timezone_aware"),
        ("2026-11-22 09:00:00Z", "datetime_format"),
        ("tomorrow", "datetime_format"),
    ):
        with pytest.raises(ValidationError) as refused:
            INSTANT.validate_python(value)
        assert refused.value.errors()[0]["type"] == kind
    assert INSTANT.validate_python("2026-11-22T09:00:00+08:00") is not None
