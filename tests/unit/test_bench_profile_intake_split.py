"""``bench.profile_intake``'s split of a POST's CPU by part (Round 37, #12): each busy sample
given to one part, the group commit's task told from the request's, idle waits left out."""

from __future__ import annotations

import pytest
from bench.profile_intake import OTHER_PART, split, summarise

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

_SITE = "/x/.venv/lib/python3.12/site-packages"
_ROOT = "/x/services/intake/branchline_intake"
_SHARED = "/x/shared/branchline_shared"
_LOOP = "run (/usr/lib/python3.12/asyncio/runners.py:118)"
_GROUP = f"{_LOOP};_write_groups ({_ROOT}/application/group_commit.py:300)"
_REQUEST = f"{_LOOP};run_asgi ({_SITE}/uvicorn/protocols/http/httptools_impl.py:401)"


def _collapsed(*stacks: tuple[str, int]) -> str:
    return "\n".join(f"{stack} {weight}" for stack, weight in stacks)


def test_each_sample_goes_to_one_part_and_the_group_task_is_told_from_the_request() -> None:
    collapsed = _collapsed(
        (f"{_GROUP};_do_execute ({_SITE}/asyncpg/connection.py:1800)", 30),
        (f"{_GROUP};decide ({_ROOT}/domain/decision.py:12)", 20),
        (f"{_GROUP};_record ({_ROOT}/application/submit.py:700)", 10),
        (f"{_GROUP};_take_group ({_ROOT}/application/group_commit.py:310)", 5),
        (f"{_REQUEST};scope_principal ({_SHARED}/http/auth.py:330)", 10),
        (f"{_REQUEST};write ({_SHARED}/http/joined_writes.py:44)", 15),
        (f"{_REQUEST};_within_deadline ({_SHARED}/http/edge.py:200)", 5),
        (f"{_LOOP};_run_once (/usr/lib/python3.12/asyncio/base_events.py:1900)", 5),
        # not CPU: the loop's wait, and the start-up
        (f"{_LOOP};select (/usr/lib/python3.12/selectors.py:468)", 900),
        (f"{_LOOP};lifespan ({_SITE}/starlette/routing.py:700)", 900),
    )
    shares = split(collapsed)
    assert shares == {
        "group commit: asyncpg (encode, send, decode)": 30.0,
        "group commit: deciding (the D-rules on the recorded state)": 20.0,
        "answer: the socket write": 15.0,
        "group commit: envelopes, payload checks, staging": 10.0,
        "auth: token, roles": 10.0,
        "group commit: grouping, guesses, bookkeeping": 5.0,
        "edge and middlewares (deadline, limits, metrics, ids)": 5.0,
        OTHER_PART: 5.0,
    }
    summary = summarise(collapsed)
    assert "split by part of a POST:" in summary
    assert " 30.0%  group commit: asyncpg (encode, send, decode)" in summary
