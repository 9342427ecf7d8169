"""The rules pick their guard by the payload's class through ``KindOf`` (#12): the answer is
the ``isinstance`` chain's, for every catalogue class, and the chain runs once per class."""

from __future__ import annotations

from typing import Any

import pytest

from branchline_intake.domain import client, decision, related
from branchline_intake.domain.kinds import KindOf
from branchline_shared.events.catalogue import PAYLOAD_MODELS

pytestmark = pytest.mark.unit

DISPATCHES: dict[str, KindOf] = {
    "decision._GUARDED": decision._GUARDED,
    "client._REGISTRATION": client._REGISTRATION,
    "client._CLIENT_GUARDED": client._CLIENT_GUARDED,
    "related._PRODUCT_EVENT": related._PRODUCT_EVENT,
}


def _chain(payload: object, kinds: tuple[type, ...]) -> type | None:
    for kind in kinds:
        if isinstance(payload, kind):
            return kind
    return None


@pytest.mark.parametrize("name", sorted(DISPATCHES))
def test_every_catalogue_class_gets_the_isinstance_chains_answer(name: str) -> None:
    dispatch = DISPATCHES[name]
    kinds: tuple[type, ...] = dispatch._kinds
    assert kinds, "a dispatch without classes"
    for model in PAYLOAD_MODELS.values():
        payload = model.model_construct()
        expected = _chain(payload, kinds)
        assert dispatch(payload) is expected, model.__name__
        assert dispatch(payload) is expected, model.__name__  # remembered, the same answer
    # Every class the rules guard is reached by some catalogue model.
    reached = {dispatch(m.model_construct()) for m in PAYLOAD_MODELS.values()}
    assert set(kinds) <= reached


def test_the_first_matching_class_wins_and_is_asked_once_per_class() -> None:
    asked: list[tuple[str, type]] = []

    class Counting(type):
        def __instancecheck__(cls, instance: Any) -> bool:
            asked.append((cls.__name__, type(instance)))
            return super().__instancecheck__(instance)

    class Base(metaclass=Counting):
        pass

    class Child(Base):
        pass

    class Other(metaclass=Counting):
        pass

    kind_of = KindOf(Other, Base, Child)
    assert kind_of(Child()) is Base  # Base comes before Child, as in an isinstance chain
    assert kind_of(Child()) is Base
    assert kind_of(object()) is None
    assert kind_of(object()) is None
    assert asked == [
        ("Other", Child),
        ("Base", Child),
        ("Other", object),
        ("Base", object),
        ("Child", object),
    ]
