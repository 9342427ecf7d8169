"""Answers that pure ASGI middlewares send themselves (before or instead of the app)."""

from __future__ import annotations

from starlette.types import Message, Send

from branchline_shared.http.problems import PROBLEM_JSON, Problem


async def send_problem(send: Send, problem: Problem) -> None:
    """``problem`` as an RFC 9457 answer, with its headers."""
    import orjson

    body = orjson.dumps(problem.body())
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def no_receive() -> Message:
    return {"type": "http.disconnect"}
