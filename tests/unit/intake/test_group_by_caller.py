"""#12: a group's requests are decided per caller, in arrival order, the callers found by a
hash of their arguments instead of comparing each caller with every other."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from branchline_intake.application.group_commit import _by_caller, _Waiting
from branchline_shared.events.envelope import Actor, Submitter


class Counted:
    """A hashable caller argument that counts how often it is compared."""

    compared = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        Counted.compared += 1
        return isinstance(other, Counted) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def waiting(**caller: Any) -> _Waiting:
    return _Waiting([], caller, cast("asyncio.Future[Any]", None))  # never answered here


def test_equal_callers_are_one_caller_in_arrival_order() -> None:
    first = waiting(submitted_by=Actor(id="b-1", role="branch_system"), submitter=None)
    other = waiting(submitted_by=Actor(id="b-2", role="branch_system"), submitter=None)
    # Equal, but other objects, and the arguments in another order.
    again = waiting(submitter=None, submitted_by=Actor(id="b-1", role="branch_system"))
    signed = Submitter(sub="b-1", roles=("branch_system",), branch_id="BR-1")
    with_submitter = waiting(submitted_by=Actor(id="b-1", role="branch_system"), submitter=signed)
    grouped = _by_caller([first, other, again, with_submitter])
    assert [members for _, members in grouped] == [[first, again], [other], [with_submitter]]
    assert [caller for caller, _ in grouped] == [first.caller, other.caller, with_submitter.caller]


def test_unhashable_arguments_are_compared_as_before() -> None:
    a, b, c = waiting(tags=["x"]), waiting(tags=["y"]), waiting(tags=["x"])
    assert [members for _, members in _by_caller([a, b, c])] == [[a, c], [b]]


def test_many_callers_are_not_compared_with_each_other() -> None:
    group = [waiting(submitted_by=Counted(f"b-{i % 200}")) for i in range(400)]
    Counted.compared = 0
    grouped = _by_caller(group)
    assert len(grouped) == 200
    assert all(len(members) == 2 for _, members in grouped)
    # Comparing each caller with the ones before it took about 200 * 200 comparisons; now
    # each request is compared with the one before it and with its caller's key, found by hash.
    assert Counted.compared <= 3 * len(group)
