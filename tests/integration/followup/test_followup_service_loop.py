"""The service loop on the real stack (PostgreSQL, broker, worker, API, test clock): feedback
answered within 24 hours (D-07), promises renegotiated in time or missed (D-17), corrective
actions tracked to done (D-17), account closure (D-09) and the regulatory statistics of a
seeded quarter against a hand count (D-17)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_followup.bootstrap import rebuild
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import ApiClients, History, now_utc, produce_events
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCORES = {
    "attitude": 90,
    "professionalism": 90,
    "response_speed": 40,
    "risk_management": 90,
    "convenience": 90,
}


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(
        infra,
        tmp_path,
        staff_supervisors={"rm-7": "sup-1"},
        followup_timer_poll_interval_s=0.2,
        followup_branch_profiles={"BR-US": "us_broker", "BR-CN": "cn_regulator"},
    )


def _renegotiation(complaint_id: str, to: datetime) -> dict[str, Any]:
    return {
        "complaint_id": complaint_id,
        "promised_by": to.isoformat(),
        "reason": "awaiting_third_party",
        "alternative": "sealed",
        "client_told": True,
    }


async def _tasks(api: Any, client_id: str, expect: int) -> dict[str, list[dict[str, Any]]]:
    async def probe() -> dict[str, list[dict[str, Any]]] | None:
        page = (await api.get("/v1/followups", params={"client_id": client_id})).json()
        if len(page["items"]) < expect:
            return None
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for task in page["items"]:
            by_kind.setdefault(task["kind"], []).append(task)
        return by_kind

    return await eventually(probe)


async def test_d07_d17_new_clocks_run_on_the_test_clock(
    settings: BranchlineSettings, stack: ApiClients
) -> None:
    now = now_utc()
    h = History()
    h.registered("C-L1", now - timedelta(days=1))
    survey = h.add("feedback.survey_answered", "C-L1", now - timedelta(hours=1), {"scores": SCORES})
    feedback = h.add(
        "feedback.received", "C-L1", now - timedelta(hours=1), {"kind": "concern", "comment": "x"}
    )
    h.add(
        "feedback.responded",
        "C-L1",
        now - timedelta(minutes=30),
        {"responds_to_event_id": str(feedback.event_id), "channel": "phone"},
    )
    for complaint in ("K-1", "K-2"):
        h.add(
            "complaint.received",
            "C-L1",
            now - timedelta(hours=2),
            {"complaint_id": complaint, "severity": "general", "summary": "x"},
        )
        h.add(
            "complaint.progress_reported",
            "C-L1",
            now - timedelta(hours=1),
            {
                "complaint_id": complaint,
                "note": "x",
                "next_update_by": (now + timedelta(hours=2)).isoformat(),
            },
        )
    h.add(
        "complaint.promise_renegotiated",
        "C-L1",
        now - timedelta(minutes=30),
        _renegotiation("K-1", now + timedelta(hours=5)),
    )
    h.add(
        "complaint.corrective_action_planned",
        "C-L1",
        now - timedelta(hours=1),
        {
            "complaint_id": "K-1",
            "action_id": "CA-1",
            "root_cause": "process",
            "action_kind": "process_change",
            "owner_id": "sup-1",
            "due_at": (now + timedelta(hours=10)).isoformat(),
        },
    )
    await produce_events(settings, h.events)
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")
    admin = stack.as_(Role.ADMIN, "admin-1")

    tasks = await _tasks(supervisor, "C-L1", expect=8)
    responses = {t["source_event_id"]: t for t in tasks["feedback_response"]}
    assert responses[str(survey.event_id)]["rule"] == "D-07"
    assert responses[str(survey.event_id)]["due_at"].startswith(
        (survey.occurred_at + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M")
    )
    assert responses[str(feedback.event_id)]["sla_state"] == "done"  # feedback.responded
    promises = {t["subject"]: t for t in tasks["complaint_progress_promise"]}
    assert promises["complaint:K-1"]["due_at"].startswith(
        (now + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")
    )
    (action,) = tasks["corrective_action"]
    assert (action["assignee"], action["rule"]) == ("sup-1", "D-17")

    # 3 hours on: the promise not renegotiated is missed, the renegotiated one still runs
    moved = await admin.post("/v1/dev/clock", json={"advance_seconds": 3 * 3600})
    assert moved.status_code == 200, moved.text
    overdue = (
        await supervisor.get("/v1/followups", params={"client_id": "C-L1", "status": "overdue"})
    ).json()["items"]
    assert [(t["kind"], t["subject"]) for t in overdue] == [
        ("complaint_progress_promise", "complaint:K-2")
    ]
    quality = (await supervisor.get("/v1/quality", params={"branch_id": "BR-001"})).json()
    assert quality["improvement"]["promises"] == {
        "due": 1,
        "kept": 0,
        "missed": 1,
        "renegotiated": 1,
        "kept_rate": 0.0,
    }
    assert quality["improvement"]["corrective_actions"]["planned"] == 1

    # a day on: the unanswered survey and the corrective action are overdue
    await admin.post("/v1/dev/clock", json={"advance_seconds": 21 * 3600})
    overdue = (
        await supervisor.get("/v1/followups", params={"client_id": "C-L1", "status": "overdue"})
    ).json()["items"]
    assert {t["kind"] for t in overdue} == {
        "complaint_response",  # never acknowledged (D-07)
        "complaint_progress_promise",
        "feedback_response",
        "corrective_action",
    }
    quality = (await supervisor.get("/v1/quality", params={"branch_id": "BR-001"})).json()
    actions = quality["improvement"]["corrective_actions"]
    assert (actions["done"], actions["open_overdue"]) == (0, 1)
    assert quality["improvement"]["complaint_analysis"]["by_branch"] == {"BR-001": 2}

    # completing the response task records the response (followup.completed)
    rm = stack.as_(Role.RM, "rm-7")
    done = await rm.post(
        f"/v1/followups/{responses[str(survey.event_id)]['id']}/complete",
        json={"outcome": "contacted", "note": "apologised for the wait"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["sla_state"] == "done"


async def test_d09_closure_ends_the_relationship_and_d17_statistics_match_a_hand_count(
    settings: BranchlineSettings, stack: ApiClients
) -> None:
    now = now_utc()
    h = History()
    h.registered("C-L2", now - timedelta(days=200))
    h.add(
        "client.identity_verified",
        "C-L2",
        now - timedelta(days=199),
        {"method": "networked_id_check", "document_type": "resident_id"},
    )
    for days_ago, risk in ((40, "R4"), (30, "R5"), (20, "R2"), (10, "R4")):
        h.add(
            "product.sold",
            "C-L2",
            now - timedelta(days=days_ago),
            {"product_id": f"P-{risk}", "amount": "100000", "product_risk": risk},
        )
    h.add("client.account_closed", "C-L2", now - timedelta(days=1), {"reason": "relocation"})

    # A seeded quarter (2026-Q2) at a US broker branch and a Chinese branch, and complaints
    # just outside it: the hand count below is the expected report.
    def complaint(n: int, branch: str, at: datetime, **extra: Any) -> None:
        client = f"C-S{n}"
        h.branch_id = branch
        h.registered(client, at - timedelta(days=1))
        h.add(
            "complaint.received",
            client,
            at,
            {"complaint_id": f"K-{n}", "severity": "general", "summary": "x", **extra},
        )

    def resolved(n: int, at: datetime) -> None:
        h.add("complaint.resolved", f"C-S{n}", at, {"complaint_id": f"K-{n}", "resolution": "x"})

    q2 = datetime(2026, 4, 1, tzinfo=UTC)
    fund = {"problem": "unsuitable_advice", "product_category": "fund"}
    complaint(1, "BR-US", q2 + timedelta(days=3), **fund)
    complaint(2, "BR-US", q2 + timedelta(days=40), **fund)
    resolved(2, q2 + timedelta(days=45))
    complaint(3, "BR-US", q2 + timedelta(days=80), problem="fees_charges", product_category="bond")
    complaint(4, "BR-US", q2 + timedelta(days=85))
    complaint(5, "BR-US", q2 + timedelta(days=91), **fund)  # 1 July: Q3
    complaint(6, "BR-US", q2 - timedelta(hours=1), **fund)  # 31 March: Q1
    deposit = {"problem": "service_quality", "product_category": "deposit"}
    complaint(7, "BR-CN", q2 + timedelta(days=2), **deposit)
    resolved(7, q2 + timedelta(days=10))  # within 15 days
    complaint(8, "BR-CN", q2 + timedelta(days=5), **deposit)
    resolved(8, q2 + timedelta(days=25))  # late
    complaint(9, "BR-CN", q2 + timedelta(days=5), complex=True, **deposit)
    resolved(9, q2 + timedelta(days=30))  # complex: 30 days, within
    await produce_events(settings, h.events)
    auditor = stack.as_(Role.AUDITOR, "auditor-1")
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")

    async def closed_client() -> dict[str, Any] | None:
        view = (await supervisor.get("/v1/clients/C-L2")).json()
        return view if view.get("account_status") == "closed" else None

    view = await eventually(closed_client)
    assert view["lifecycle_stage"] == "churned"
    assert view["account_closure_reason"] == "relocation"
    assert view["behaviour"]["frequency"] == "high_frequency"  # 4 sales within 90 days
    assert view["behaviour"]["style"] == "aggressive"  # 3 of 4 holdings above R3
    assert "win_back" in {t["kind"] for t in view["open_tasks"]}

    period = {"from": q2.isoformat(), "to": datetime(2026, 7, 1, tzinfo=UTC).isoformat()}

    async def us_report() -> dict[str, Any] | None:
        report = (
            await auditor.get(
                "/v1/statistics/complaints", params={"profile": "us_broker", **period}
            )
        ).json()
        resolved = sum(r["resolved"] for r in report.get("rows", []))
        return report if report.get("total_received") == 4 and resolved == 1 else None

    report = await eventually(us_report)
    assert report["format"] == "finra_4530_quarterly"
    assert [
        (r["period"], r["problem_code"], r["product_code"], r["received"], r["resolved"])
        for r in report["rows"]
    ] == [
        ("2026-Q2", "fees_charges", "bond", 1, 0),
        ("2026-Q2", "unclassified", "unclassified", 1, 0),
        ("2026-Q2", "unsuitable_advice", "fund", 2, 1),
    ]
    assert {r["report_due_on"] for r in report["rows"]} == {"2026-07-15"}

    async def cn_csv() -> list[dict[str, str]] | None:
        response = await auditor.get(
            "/v1/statistics/complaints",
            params={"profile": "cn_regulator", "format": "csv", **period},
        )
        rows = list(csv.DictReader(io.StringIO(response.text)))
        return rows if rows and rows[0]["resolved"] == "3" else None

    (row,) = await eventually(cn_csv)
    assert (row["problem_code"], row["product_code"]) == ("service_quality", "deposit")
    assert (row["resolved_within_deadline"], row["resolved_late"], row["open"]) == ("2", "1", "0")

    for one_bound in ({"from": period["from"]}, {"to": period["to"]}):
        # one bound only: the period is that bound's quarter, whatever day it is asked (D-17)
        same = await auditor.get(
            "/v1/statistics/complaints", params={"profile": "us_broker", **one_bound}
        )
        assert same.status_code == 200, same.text
        assert same.json() == report

    refused = await auditor.get("/v1/statistics/complaints", params={"profile": "nowhere"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "profile"
    rm = stack.as_(Role.RM, "rm-7")
    assert (
        await rm.get("/v1/statistics/complaints", params={"profile": "us_broker"})
    ).status_code == 403


async def test_d07_a_rebuild_after_a_profile_change_keeps_every_deadline(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    now = now_utc()
    h = History(branch_id="BR-PC")
    h.registered("C-P1", now - timedelta(hours=3))
    h.visit("C-P1", "V-P1", now - timedelta(hours=2))
    h.add(
        "complaint.received",
        "C-P1",
        now - timedelta(hours=1),
        {"complaint_id": "K-P1", "severity": "urgent", "summary": "x"},
    )
    await produce_events(settings, h.events)
    columns = "id, kind, assignee, due_at, deadline_profile, status"

    async def stored() -> list[Any] | None:
        rows = await db.fetch(
            f"SELECT {columns} FROM fu_read.fu_tasks WHERE client_id = 'C-P1' ORDER BY id"
        )
        return rows if len(rows) == 4 else None  # revisit, survey, response, handling

    before = [tuple(r) for r in await eventually(stored)]
    recorded = await db.fetch(
        "SELECT envelope FROM es_events WHERE type = 'followup.task_created' AND client_id = 'C-P1'"
    )
    assert len(recorded) == 4  # every creation is an event carrying its deadline and profile

    # The branch moves to another jurisdiction profile and the deadlines change; the rebuild
    # replays the recorded creations instead of recomputing them.
    changed = settings.model_copy(
        update={
            "followup_branch_profiles": {
                **settings.followup_branch_profiles,
                "BR-PC": "cn_regulator",
            },
            "followup_durations_s": {"survey_within": 3600.0, "new_client_first_revisit": 7200.0},
        }
    )
    result = await rebuild(changed)
    assert result.skipped == 0
    after = [
        tuple(r)
        for r in await db.fetch(
            f"SELECT {columns} FROM fu_read.fu_tasks WHERE client_id = 'C-P1' ORDER BY id"
        )
    ]
    assert after == before
    assert {r[4] for r in after} == {"default"}
