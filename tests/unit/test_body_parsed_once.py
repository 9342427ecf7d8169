"""The strict input check parses a JSON body once; routes of ``ParsedBodyRoute`` validate
their models from that document instead of parsing the bytes again (#12)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict

from branchline_shared.http.strict_input import ParsedBodyRoute, StrictInput

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class Visit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visit_id: str
    minutes: int


def app_with(route_class: type[ParsedBodyRoute] | None) -> FastAPI:
    app = FastAPI()
    router = APIRouter(route_class=route_class) if route_class else APIRouter()

    @router.post("/visits")
    async def post_visit(visit: Visit) -> dict[str, Any]:
        return {"visit_id": visit.visit_id, "minutes": visit.minutes}

    app.include_router(router)
    app.add_middleware(StrictInput)
    return app


async def post(app: FastAPI, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/visits", **kwargs)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every body Starlette's ``Request.json`` parsed itself (the second parse removed)."""
    seen: list[bytes] = []
    real = Request.json

    async def counting(self: Request) -> Any:
        if not hasattr(self, "_json"):
            seen.append(await self.body())
        return await real(self)

    monkeypatch.setattr(Request, "json", counting)
    return seen


async def test_a_parsed_body_route_validates_the_document_the_strict_check_parsed(
    parses: list[bytes],
) -> None:
    answer = await post(app_with(ParsedBodyRoute), json={"visit_id": "V-1", "minutes": 5})
    assert answer.status_code == 200
    assert answer.json() == {"visit_id": "V-1", "minutes": 5}
    assert parses == []


async def test_an_ordinary_route_parses_the_body_a_second_time(parses: list[bytes]) -> None:
    answer = await post(app_with(None), json={"visit_id": "V-1", "minutes": 5})
    assert answer.status_code == 200
    assert len(parses) == 1


async def test_validation_errors_are_those_of_the_model(parses: list[bytes]) -> None:
    answer = await post(
        app_with(ParsedBodyRoute), json={"visit_id": "V-1", "minutes": "many", "x": 1}
    )
    assert answer.status_code == 422
    fields = {tuple(e["loc"]) for e in answer.json()["detail"]}
    assert fields == {("body", "minutes"), ("body", "x")}
    assert parses == []


async def test_what_the_strict_check_refuses_never_reaches_the_route(parses: list[bytes]) -> None:
    answer = await post(
        app_with(ParsedBodyRoute),
        content=b'{"visit_id": "V-1", "visit_id": "V-2", "minutes": 5}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert "duplicate key" in answer.text


async def test_a_body_that_is_not_json_is_still_the_route_s_to_answer(parses: list[bytes]) -> None:
    answer = await post(
        app_with(ParsedBodyRoute),
        content=b'{"visit_id": ',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "json_invalid"
    assert len(parses) == 1  # the route's own parse, which fails
