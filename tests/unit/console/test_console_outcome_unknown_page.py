"""The console's page for a change whose ``COMMIT`` was lost and could not be asked about
(503 ``outcome-unknown``): an action marked safe to send again (answered as it was, recorded
once) says so, in English and Chinese; any other keeps "look before doing it again" (#12)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from branchline_shared.console.pages import install_console
from branchline_shared.console.web import ConsoleConfig, ResendSafe
from branchline_shared.http.problems import install_problem_handlers
from branchline_shared.postgres.faults import CommitOutcomeUnknown

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

SAFE = {
    "en": "It is safe to do it again: done again, it is answered as it was, and recorded once.",
    "zh": "可以放心重做",
}
LOOK = {"en": "Look before doing it again.", "zh": "请先查看"}


def an_app() -> FastAPI:
    router = APIRouter(prefix="/console")

    @router.post("/marked", dependencies=[ResendSafe])
    async def marked() -> None:
        raise CommitOutcomeUnknown("lost")

    @router.post("/unmarked")
    async def unmarked() -> None:
        raise CommitOutcomeUnknown("lost")

    app = FastAPI()
    install_problem_handlers(app)
    config = ConsoleConfig(service="test", template_dirs=[], nav=lambda _p: [], home=lambda _p: "/")
    install_console(app, config, router)
    return app


@pytest.mark.parametrize("locale", ["en", "zh"])
async def test_an_outcome_unknown_page_says_whether_the_action_may_be_done_again(
    locale: str,
) -> None:
    transport = httpx.ASGITransport(app=an_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        headers = {"accept-language": locale}
        marked = await client.post("/console/marked", headers=headers)
        unmarked = await client.post("/console/unmarked", headers=headers)
    for page in (marked, unmarked):
        assert page.status_code == 503, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert int(page.headers["retry-after"]) > 0
    assert SAFE[locale] in marked.text  # old: the warning for every action
    assert LOOK[locale] not in marked.text
    assert LOOK[locale] in unmarked.text
    assert SAFE[locale] not in unmarked.text
