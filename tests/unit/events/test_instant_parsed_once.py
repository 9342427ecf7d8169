"""An instant's text is parsed once while it is kept (#12): the instant of a text sent again is
the one parsed before, and every text, sent once or again, is accepted or refused exactly as
when each was parsed on its own."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from branchline_shared.events import bounded
from branchline_shared.events.bounded import Instant

pytestmark = pytest.mark.unit

INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)

texts = st.builds(
    lambda date, time, fraction, suffix: f"{date}{time}{fraction}{suffix}",
    st.sampled_from(["2026-11-22", "1899-12-31", "2199-12-31", "2200-01-01", "2026-02-30"]),
    st.sampled_from(["T09:00:00", "t23:59:59", "T00:00:00", "T9:00:00"]),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["", "Z", "z", "+08:00", "-14:00", "+14:00", "+15:00", "-00:00", "+0800"]),
) | st.text(max_size=40)


def _outcome(text: str) -> tuple[str, object]:
    try:
        value = INSTANT.validate_python(text)
    except ValidationError as error:
        (found,) = error.errors()
        return "refused", (found["type"], found["msg"])
    return "accepted", (value, value.utcoffset())


def _alone(text: str) -> tuple[str, object]:
    """The text parsed as if never seen: the cache emptied first."""
    bounded._INSTANTS.clear()
    return _outcome(text)


@settings(max_examples=400, deadline=None)
@given(sequence=st.lists(texts, min_size=1, max_size=8))
def test_each_text_has_the_outcome_it_has_alone_whatever_was_parsed_before(
    sequence: list[str],
) -> None:
    alone = [_alone(text) for text in sequence]
    bounded._INSTANTS.clear()
    twice = [_outcome(text) for text in sequence + sequence]
    assert twice == alone + alone


def test_a_text_sent_again_is_the_instant_parsed_before() -> None:
    bounded._INSTANTS.clear()
    first = INSTANT.validate_python("2026-12-05T10:00:00.123+08:00")
    again = INSTANT.validate_python("2026-12-05T10:00:00.123+08:00")
    assert again is first  # parsed again, it would be an equal but other object


def test_a_refused_text_is_refused_every_time() -> None:
    bounded._INSTANTS.clear()
    for _ in range(3):
        with pytest.raises(ValidationError) as refused:
            INSTANT.validate_python("2200-01-01T00:00:00Z")
        assert refused.value.errors()[0]["type"] == "datetime_window"
    assert not bounded._INSTANTS


def test_the_texts_kept_are_bounded() -> None:
    bounded._INSTANTS.clear()
    texts = [
        f"2026-12-05T10:{n // 60:02d}:{n % 60:02d}Z" for n in range(bounded._INSTANTS_KEPT + 50)
    ]
    largest = 0
    for text in texts:
        INSTANT.validate_python(text)
        largest = max(largest, len(bounded._INSTANTS))
    assert largest == bounded._INSTANTS_KEPT  # more distinct texts than are kept: never more
    last = INSTANT.validate_python(texts[-1])
    assert INSTANT.validate_python(texts[-1]) is last  # and what is in use is kept again


class _Text(str):
    """A str subclass with an equality of its own: never answered from what an equal plain
    text parsed to."""

    __slots__ = ()


def test_a_subclass_of_str_is_parsed_itself() -> None:
    bounded._INSTANTS.clear()
    first = INSTANT.validate_python("2026-12-05T10:00:00Z")
    other = INSTANT.validate_python(_Text("2026-12-05T10:00:00Z"))
    assert other == first
    assert other is not first
