"""A per-task form's field of the work list longer than it takes (#12): a completion's note,
a reassignment's new assignee or reason. The action's own error, before anything is
recorded: the work list again (a plain post's page, htmx's fragment) with that task's form
open and the field marked (``aria-invalid``, described by a note naming its limit, in English
and Chinese), the other fields and tasks unmarked, the value sent never shown."""

from __future__ import annotations

import html
import re
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_shared.http.auth import Role
from tests.integration.followup.harness import ApiClients
from tests.integration.followup.test_console_work_pages import FRAGMENT, add_tasks, shown

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ZH = {"accept-language": "zh-CN"}
SAID = {
    "en": (
        "Nothing was recorded: a field is too long (marked on the task&#39;s form).",
        "Left out: it was longer than the {limit} characters this field takes.",
    ),
    "zh": (
        "未记录任何内容\uff1a有字段过长",
        "已略去\uff1a超出此字段允许的 {limit} 个字符",
    ),
}


def field_of(page: httpx.Response, ident: str) -> str:
    found = re.search(rf'<(?:input|textarea) id="{ident}"[^>]*>', page.text)
    assert found is not None, page.text
    return found.group(0)


def form_of(page: httpx.Response, ident: str) -> str:
    """The ``<details>`` tag of the per-task form holding the field ``ident``."""
    opened = [
        m
        for m in re.finditer(r"<details[^>]*>", page.text)
        if m.start() < page.text.index(f'id="{ident}"')
    ]
    assert opened, page.text
    return opened[-1].group(0)


def assert_marked(
    page: httpx.Response, ident: str, limit: int, sent: str, lang: str, unmarked: list[str]
) -> None:
    error, note = SAID[lang]
    assert error in page.text, page.text
    assert sent[:40] not in page.text  # the value refused is never shown again
    field = field_of(page, ident)
    assert 'aria-invalid="true"' in field
    assert f'aria-describedby="{ident}-too-long"' in field
    said = re.search(
        rf'<span id="{ident}-too-long" class="error field-error">(.*?)</span>', page.text
    )
    assert said is not None, page.text
    assert html.unescape(said.group(1)).startswith(note.format(limit=limit))
    assert form_of(page, ident) == '<details class="action" open>'
    for other in unmarked:
        assert "aria-invalid" not in field_of(page, other)
    assert page.text.count("-too-long") == 2  # the field and its note, nothing else


async def test_a_too_long_note_is_marked_on_its_tasks_form_plain_and_htmx(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 3, assignee="rm-7")
    rm = stack.console_as(Role.RM, "rm-7")
    task, other, _ = shown(await rm.get("/console/"))
    before = await db.fetchval("SELECT count(*) FROM es_events")
    note = "N" * 2001
    form = {"outcome": "contacted", "note": note, "f_status": "open"}

    plain = await rm.post(f"/console/tasks/{task}/complete", data=form)
    assert plain.status_code == 422, plain.text
    assert plain.headers["content-type"].startswith("text/html")
    assert 'id="filters"' in plain.text  # the work list's page, not a refused page
    assert_marked(plain, f"note-{task}", 2000, note, "en", [f"note-{other}"])
    assert form_of(plain, f"note-{other}") == '<details class="action">'

    fragment = await rm.post(
        f"/console/tasks/{task}/complete", data=form, headers={**FRAGMENT, **ZH}
    )
    assert fragment.status_code == 200, fragment.text
    assert fragment.text.startswith('<section id="work-list"')
    assert_marked(fragment, f"note-{task}", 2000, note, "zh", [f"note-{other}"])

    # surrounding whitespace is not counted (the event holds the note stripped)
    padded = await rm.post(
        f"/console/tasks/{task}/complete",
        data={**form, "note": f"  {'N' * 2000}\n", "outcome": "not-an-outcome"},
        headers=FRAGMENT,
    )
    assert "Choose an outcome." in padded.text
    assert "-too-long" not in padded.text
    assert await db.fetchval("SELECT count(*) FROM es_events") == before
    assert (
        await db.fetchval(
            "SELECT count(*) FROM fu_read.fu_tasks WHERE status = 'open' AND assignee = 'rm-7'"
        )
        == 3
    )


async def test_a_too_long_assignee_or_reason_is_marked_on_its_tasks_reassign_form(
    stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    await add_tasks(db, 2, assignee="rm-7")
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    task, other = shown(await supervisor.get("/console/?assignee=rm-7"))
    before = await db.fetchval("SELECT count(*) FROM es_events")
    reason = "R" * 201
    form = {"assignee": "rm-8", "reason": reason, "f_status": "open", "f_assignee": "rm-7"}

    plain = await supervisor.post(f"/console/tasks/{task}/reassign", data=form)
    assert plain.status_code == 422, plain.text  # as the complete form's plain refusal
    assert 'id="filters"' in plain.text
    assert_marked(plain, f"why-{task}", 200, reason, "en", [f"to-{task}", f"why-{other}"])
    assert form_of(plain, f"note-{task}") == '<details class="action">'  # not the completion

    assignee = "a" * 129
    fragment = await supervisor.post(
        f"/console/tasks/{task}/reassign",
        data={**form, "assignee": assignee, "reason": "on leave"},
        headers={**FRAGMENT, **ZH},
    )
    assert fragment.status_code == 200, fragment.text
    assert_marked(fragment, f"to-{task}", 128, assignee, "zh", [f"why-{task}", f"to-{other}"])

    # a new assignee that is no staff id at all is refused as before (the refused page)
    refused = await supervisor.post(
        f"/console/tasks/{task}/reassign", data={**form, "assignee": "rm 8", "reason": ""}
    )
    assert refused.status_code == 422, refused.text
    assert 'id="console-refused"' in refused.text
    assert await db.fetchval("SELECT count(*) FROM es_events") == before
    assert await db.fetchval("SELECT count(*) FROM fu_read.fu_tasks WHERE assignee = 'rm-7'") == 2
