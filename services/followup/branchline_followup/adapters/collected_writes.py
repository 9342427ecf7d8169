"""What a unit of work collected to write before it commits, in ONE statement (#12).

A one-event batch sent its collected writes as five statements (the clients' facts, the
journal rows, the tasks, the timers, the timeline), each a round trip. Here each is a
data-modifying CTE of one statement over its rows, so a batch sends one; a part's rows are one
JSON argument (:func:`rows_argument`), not an array per column. The parts
write different tables (the two clients' parts, different rows of one: :func:`add_clients`),
and no table has a foreign key to another, so what one part writes is never what another
reads: running them in one statement (one snapshot) writes what running them in turn wrote.
The one trigger on these tables that writes elsewhere (console migration 004's copy of a
client's RM onto ``fu_refusals``) writes a table no part writes, and fires after the
statement, when every part's rows are in. Within a part each row must be a different row (a
statement cannot change a row twice): the facts and the tasks are one row per client and task
(the latest saved; a client whose account the batch closed or reopened with the reason its
row ends with, in a part of its own), the journal and the timeline skip a repeat (``DO
NOTHING``), and timer syncs go into the statement only when each task is synced once
(:func:`merged_timer_syncs`; otherwise they run before it, merged in rounds:
:func:`timer_sync_rounds`), and the client page's consents and assessments are reduced to
the one a row would end with (:func:`latest_console_rows`), a visit's rows to the one its
upserts in turn would leave (:func:`latest_visit_rows`), and the service loop's writes
(surveys, complaints and their steps, corrective actions, renegotiations, business events)
likewise, one row per survey, complaint, action or event (:func:`add_service_loop`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from branchline_followup.adapters import read_models
from branchline_followup.adapters.console_read_models import (
    ASSESSMENT_UPSERT,
    CONSENT_UPSERT,
    ConsoleRow,
)
from branchline_followup.adapters.json_rows import rows_argument
from branchline_followup.adapters.read_models import FACT_COLUMNS, TASK_COLUMNS, VISIT_COLUMNS
from branchline_followup.domain import FollowupTask
from branchline_followup.domain.records import ClientFacts

_FACT_TYPES = {
    "client_type": "text",
    "rm_id": "text",
    "branch_id": "text",
    "lifecycle_stage": "text",
    "registered_at": "timestamptz",
    "last_event_at": "timestamptz",
    "last_contact_at": "timestamptz",
    "risk_tolerance": "text",
    "risk_level": "text",
    "identity_verified_at": "timestamptz",
    "first_business_at": "timestamptz",
    "last_business_at": "timestamptz",
    "assets_under_management": "numeric",
    "account_closed_at": "timestamptz",
    "stage_as_of": "timestamptz",
    "stage_changes_at": "timestamptz",
    "last_business_event_id": "uuid",
}
_TASK_TYPES = {
    "id": "uuid",
    "kind": "text",
    "rule": "text",
    "client_id": "text",
    "branch_id": "text",
    "assignee": "text",
    "subject": "text",
    "opened_at": "timestamptz",
    "due_at": "timestamptz",
    "deadline_profile": "text",
    "source_event_id": "uuid",
    "status": "text",
    "closed_at": "timestamptz",
    "closed_by_event_id": "uuid",
    "close_reason": "text",
    "escalated_to": "text",
}


def _rows(types: Sequence[str]) -> str:
    """The select list of a part's rows, each a JSON array of :data:`types`' values in order
    (``r``: one element of the part's argument, :func:`rows_argument`)."""
    return ", ".join(
        f"r->>{i}" if t == "text" else f"r->{i}" if t == "jsonb" else f"(r->>{i})::{t}"
        for i, t in enumerate(types)
    )


_EACH_ROW = "jsonb_array_elements({0}::text::jsonb) AS e(r)"
"""The rows of a part: its one argument, a JSON array of rows (:func:`rows_argument`)."""

_CLIENTS = (
    f"INSERT INTO fu_clients (client_id, {', '.join(FACT_COLUMNS)}) "  # noqa: S608 - fixed identifiers, bound values
    f"SELECT {_rows(['text', *(_FACT_TYPES[c] for c in FACT_COLUMNS)])} FROM {_EACH_ROW} "
    "ON CONFLICT (client_id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in FACT_COLUMNS)}, updated_at = now()"
)
_CLIENTS_CLOSING = (
    f"INSERT INTO fu_clients (client_id, {', '.join(FACT_COLUMNS)}, account_closure_reason) "  # noqa: S608 - fixed identifiers, bound values
    f"SELECT {_rows(['text', *(_FACT_TYPES[c] for c in FACT_COLUMNS), 'text'])} FROM {_EACH_ROW} "
    "ON CONFLICT (client_id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in FACT_COLUMNS)}, "
    "account_closure_reason = EXCLUDED.account_closure_reason, updated_at = now()"
)
""":data:`_CLIENTS` for the clients whose account the batch closed or reopened (D-09), each
row with the reason the last closure or reopening left (a reopening's: null): what
:data:`.service_loop_facts.CLOSURE_UPDATE` after the row's write in turn leaves (#12: a
statement of its own per closure before). A client is in one of the two parts, never both (a
statement cannot change a row twice)."""
_JOURNAL = (
    "INSERT INTO fu_client_events "  # noqa: S608 - fixed identifiers, bound values
    "(event_id, client_id, source, global_position, recorded_ms, envelope) "
    f"SELECT {_rows(['uuid', 'text', 'text', 'bigint', 'bigint', 'jsonb'])} FROM {_EACH_ROW} "
    "ON CONFLICT (event_id) DO NOTHING"
)
_TASKS = (
    f"INSERT INTO fu_tasks ({', '.join(TASK_COLUMNS)}) "  # noqa: S608 - fixed identifiers, bound values
    f"SELECT {_rows([_TASK_TYPES[c] for c in TASK_COLUMNS])} FROM {_EACH_ROW} "
    "ON CONFLICT (id) DO UPDATE SET "
    f"{', '.join(f'{c} = EXCLUDED.{c}' for c in TASK_COLUMNS if c != 'id')}"
)
_TIMERS_DROPPED = (
    "DELETE FROM fu_timers WHERE task_id = ANY({1}::uuid[]) AND num_nulls(fired_at) = 1 AND NOT ("
    "id = ANY(ARRAY(SELECT (r->>0)::uuid FROM jsonb_array_elements({0}::text::jsonb) AS e(r))))"
)
_TIMERS_WANTED = (
    "INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at) "  # noqa: S608 - fixed identifiers, bound values
    f"SELECT {_rows(['uuid', 'uuid', 'text', 'text', 'timestamptz'])} FROM {_EACH_ROW} "
    "ON CONFLICT (id) DO UPDATE SET fire_at = EXCLUDED.fire_at, fired_at = NULL, "
    "fired_event_id = NULL WHERE fu_timers.fire_at <> EXCLUDED.fire_at"
)
""":data:`.read_models.SYNC_TIMERS` as two parts (its DELETE and its upsert, as there): ``{0}``
the wanted timers' rows, ``{1}`` the synced tasks' ids (an array, as there: the index on
``task_id`` is probed with it as before). ``num_nulls(fired_at) = 1`` is ``fired_at IS NULL``
in a form the planner cannot match to the partial index of every unfired timer: on a table
without statistics yet it read that whole index beside the task's (a ``BitmapAnd``), each batch
(#12)."""
_TIMELINE = (
    "INSERT INTO fu_client_timeline "  # noqa: S608 - fixed identifiers, bound values
    "(client_id, occurred_at, event_id, type, branch_id, actor_id, actor_role) "
    f"SELECT {_rows(['text', 'timestamptz', 'uuid', 'text', 'text', 'text', 'text'])} "
    f"FROM {_EACH_ROW} ON CONFLICT DO NOTHING"
)
_APPLIED = (
    "INSERT INTO fu_applied_events (event_id, type, source, global_position) "  # noqa: S608 - fixed identifiers, bound values
    f"SELECT {_rows(['uuid', 'text', 'text', 'bigint'])} "
    "FROM jsonb_array_elements({0}::text::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY n "
    "ON CONFLICT (event_id) DO NOTHING"
)
"""The applied records of events the unit appended itself (in the order appended, as
:func:`.read_models.mark_all_applied` records a batch)."""
_CONSENTS = (
    "INSERT INTO fu_client_consents AS c "  # noqa: S608 - fixed identifiers, bound values
    "(client_id, purpose, granted, changed_at, expires_at) "
    f"SELECT {_rows(['text', 'text', 'boolean', 'timestamptz', 'timestamptz'])} "
    f"FROM {_EACH_ROW} ON CONFLICT (client_id, purpose) DO UPDATE "
    "SET granted = EXCLUDED.granted, changed_at = EXCLUDED.changed_at, "
    "expires_at = EXCLUDED.expires_at WHERE c.changed_at <= EXCLUDED.changed_at"
)
""":data:`.console_read_models.CONSENT_UPSERT` over rows (the same later-instant rule)."""
_ASSESSMENTS = (
    "INSERT INTO fu_client_assessments AS a "  # noqa: S608 - fixed identifiers, bound values
    "(client_id, level, assessed_at, valid_until, event_id) "
    f"SELECT {_rows(['text', 'text', 'timestamptz', 'timestamptz', 'uuid'])} "
    f"FROM {_EACH_ROW} ON CONFLICT (client_id) DO UPDATE "
    "SET level = EXCLUDED.level, assessed_at = EXCLUDED.assessed_at, "
    "valid_until = EXCLUDED.valid_until, event_id = EXCLUDED.event_id "
    "WHERE a.assessed_at <= EXCLUDED.assessed_at"
)
""":data:`.console_read_models.ASSESSMENT_UPSERT` over rows (the same later-instant rule)."""

_VISIT_TYPES = {
    "arrived_at": "timestamptz",
    "category": "text",
    "started_at": "timestamptz",
    "ended_at": "timestamptz",
    "closed_at": "timestamptz",
    "outcome": "text",
}
_VISITS = (
    "INSERT INTO fu_visits AS v "  # noqa: S608 - fixed identifiers, bound values
    f"(client_id, visit_id, branch_id, rm_id, {', '.join(VISIT_COLUMNS)}) "
    f"SELECT {_rows(['text', 'text', 'text', 'text', *(_VISIT_TYPES[c] for c in VISIT_COLUMNS)])} "
    f"FROM {_EACH_ROW} ON CONFLICT (client_id, visit_id) DO UPDATE SET "
    "branch_id = COALESCE(v.branch_id, EXCLUDED.branch_id), "
    "rm_id = COALESCE(v.rm_id, EXCLUDED.rm_id), "
    + ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, v.{c})" for c in VISIT_COLUMNS)
)
""":func:`.read_models.record_visit`'s upsert over rows (:func:`latest_visit_rows`'): a
column a row leaves null keeps what the table holds, which is what an upsert that does not
name it does, because a visit event only ever sets a column to a value (the unit writes one
that would set a null at once instead, :meth:`.unit_of_work._Activity.record_visit`)."""

_CONSOLE_KEYS: dict[str, tuple[int, int]] = {CONSENT_UPSERT: (2, 3), ASSESSMENT_UPSERT: (1, 2)}
"""Each console upsert's row key (its first ``n`` arguments) and its instant's argument."""


_APPENDED = (
    "SELECT (r->>0)::uuid AS event_id, r->>1 AS stream_id, r->>2 AS type, r->>3 AS client_id, "
    "(r->>4)::timestamptz AS occurred_at, (r->>5)::timestamptz AS recorded_at, "
    "r->6 AS envelope, r->>7 AS topic, r->>8 AS message_key, n "
    "FROM jsonb_array_elements({0}::text::jsonb) WITH ORDINALITY AS e(r, n)",
    "SELECT stream_id, count(*)::int AS added FROM {g} GROUP BY stream_id",
    "INSERT INTO es_streams AS s (stream_id, version) "
    'SELECT stream_id, added FROM {a} ORDER BY stream_id COLLATE "C" '
    "ON CONFLICT (stream_id) DO UPDATE SET version = s.version + EXCLUDED.version "
    "RETURNING s.stream_id, s.version",
    "SELECT g.*, s.version - a.added "
    "+ row_number() OVER (PARTITION BY g.stream_id ORDER BY g.n) AS stream_version "
    "FROM {g} g JOIN {a} a USING (stream_id) JOIN {s} s USING (stream_id)",
    "INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, "
    "occurred_at, recorded_at, envelope) "
    "SELECT event_id, stream_id, stream_version, type, client_id, occurred_at, recorded_at, "
    "jsonb_set(envelope, '{{stream_version}}', to_jsonb(stream_version)) "
    "FROM {n} ORDER BY n RETURNING event_id, global_position",
    "INSERT INTO es_outbox (event_id, topic, message_key) "
    "SELECT event_id, topic, message_key FROM {g} ORDER BY n",
    "INSERT INTO fu_applied_events (event_id, type, source, global_position) "
    "SELECT g.event_id, g.type, {1}::text, w.global_position "
    "FROM {g} g JOIN {w} w USING (event_id) ORDER BY g.n ON CONFLICT (event_id) DO NOTHING",
)


class CollectedStatement:
    """One statement made of parts, each a data-modifying CTE whose placeholders ``{i}`` are
    numbered from the arguments already added."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.args: list[Any] = []

    def add(self, templates: Sequence[str], arguments: Sequence[Any]) -> None:
        """Parts over ``arguments`` (``{i}`` in each template is ``arguments[i]``); a
        template's ``{p0}``, ``{p1}``, ... name the parts added before it by this call, in
        order (``p0`` its first)."""
        first = len(self.args) + 1
        placeholders = [f"${first + i}" for i in range(len(arguments))]
        start = len(self._parts)
        for t in templates:
            names = {f"p{i}": f"w{start + i}" for i in range(len(self._parts) - start)}
            self._parts.append(t.format(*placeholders, **names))
        self.args += arguments

    def add_rows(self, template: str, rows: Sequence[Sequence[Any]]) -> None:
        """A part over ``rows`` (its ``{0}``, :func:`rows_argument`)."""
        self.add((template,), (rows_argument(rows),))

    @property
    def sql(self) -> str | None:
        if not self._parts:
            return None
        ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(self._parts))
        return f"WITH {ctes} SELECT 1"


def add_clients(
    statement: CollectedStatement,
    facts: Sequence[ClientFacts],
    closure_reasons: Mapping[str, str | None] | None = None,
) -> None:
    """The clients' rows; those in ``closure_reasons`` (the reason each one's last closure or
    reopening set on its row, :data:`_CLIENTS_CLOSING`) in a part of their own, sent only
    when there are any (the texts stay those of a batch without a closure otherwise)."""
    reasons = closure_reasons or {}
    plain = [read_models.client_row(f) for f in facts if f.client_id not in reasons]
    closing = [
        [*read_models.client_row(f), reasons[f.client_id]] for f in facts if f.client_id in reasons
    ]
    if plain:
        statement.add_rows(_CLIENTS, plain)
    if closing:
        statement.add_rows(_CLIENTS_CLOSING, closing)


def add_journal(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows``: :func:`.client_journal.journal_row`'s (the envelope as a JSON object, which
    the part stores as it is)."""
    if rows:
        statement.add_rows(_JOURNAL, rows)


def add_tasks(statement: CollectedStatement, tasks: Sequence[FollowupTask]) -> None:
    if tasks:
        statement.add_rows(_TASKS, [read_models.task_row(t) for t in tasks])


def merged_timer_syncs(syncs: Sequence[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """:func:`.read_models.sync_timers_args` of several syncs as one, when no task is synced
    twice (a timer belongs to one task, so then no row is changed twice and the syncs touch
    different rows: one at once is each in turn); None otherwise."""
    task_ids = [t for sync in syncs for t in sync[5]]
    if len(set(task_ids)) != len(task_ids):
        return None
    return _merged(syncs)


def _merged(syncs: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    return tuple([v for sync in syncs for v in sync[i]] for i in range(6))


def timer_sync_rounds(syncs: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The syncs as few merged syncs (:func:`merged_timer_syncs`) run in turn: each sync goes
    into the round after the last one holding a sync of any of its tasks, so every task's
    syncs run in the order made, one per round, and a round syncs each task once at most (#12:
    a task created and closed in one batch made the whole batch's syncs run one by one). Syncs
    of different tasks touch different rows (a timer belongs to one task): which round runs
    them changes nothing. One round: every task synced once."""
    merged = merged_timer_syncs(syncs)
    if merged is not None:
        return [merged]
    last: dict[Any, int] = {}
    rounds: list[list[tuple[Any, ...]]] = []
    for sync in syncs:
        task_ids = sync[5]
        index = max((last[t] + 1 for t in task_ids if t in last), default=0)
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(sync)
        for t in task_ids:
            last[t] = index
    return [_merged(r) if len(r) > 1 else r[0] for r in rounds]


def add_timers(statement: CollectedStatement, merged: tuple[Any, ...]) -> None:
    """``merged``: :func:`merged_timer_syncs`'s (the timers' columns, then the tasks' ids)."""
    wanted = list(zip(*merged[:5], strict=True))
    statement.add((_TIMERS_DROPPED, _TIMERS_WANTED), (rows_argument(wanted), list(merged[5])))


def add_timeline(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        statement.add_rows(_TIMELINE, rows)


def add_applied(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows``: :func:`.read_models.applied_row`'s."""
    if rows:
        statement.add_rows(_APPLIED, rows)


def latest_console_rows(rows: Sequence[ConsoleRow]) -> dict[str, list[tuple[Any, ...]]]:
    """Each statement's rows reduced to one per row key: the one the upserts run in turn, as
    made, would leave (#12: a statement cannot change a row twice). An upsert replaces the row
    when its instant is not earlier, so of a key's rows the last with the latest instant is
    what the table ends with, if the table's own is not later (which the statement's ``WHERE``
    still decides)."""
    latest: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    for sql, args in rows:
        width, instant = _CONSOLE_KEYS[sql]
        kept = latest.setdefault(sql, {})
        key = args[:width]
        if key not in kept or args[instant] >= kept[key][instant]:
            kept[key] = args
    return {sql: list(kept.values()) for sql, kept in latest.items()}


def latest_visit_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """:func:`.read_models.visit_row`'s rows reduced to one per visit (#12: a statement cannot
    change a row twice; a batch may hold a visit's arrival, handling and closing): what the
    upserts in turn, as made, would leave, the table's own values aside. The first branch and
    RM given stay (the upsert keeps the row's own when it has one), each column takes the last
    value set."""
    merged: dict[tuple[Any, Any], list[Any]] = {}
    for row in rows:
        kept = merged.get(row[:2])
        if kept is None:
            merged[row[:2]] = list(row)
            continue
        for i in (2, 3):
            if kept[i] is None:
                kept[i] = row[i]
        for i in range(4, len(row)):
            if row[i] is not None:
                kept[i] = row[i]
    return [tuple(r) for r in merged.values()]


def add_visits(statement: CollectedStatement, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        statement.add_rows(_VISITS, latest_visit_rows(rows))


def add_console(statement: CollectedStatement, rows: Sequence[ConsoleRow]) -> None:
    """The client page's consent and assessment upserts (:func:`.console_read_models.
    console_rows`'s), as parts of the statement."""
    for sql, many in latest_console_rows(rows).items():
        template = _CONSENTS if sql == CONSENT_UPSERT else _ASSESSMENTS
        statement.add_rows(template, many)


def add_appended(statement: CollectedStatement, rows: Sequence[Sequence[Any]], source: str) -> None:
    """Events the unit appends with these writes (:data:`.unit_of_work._APPEND_NUMBERED`'s
    parts, over :func:`.unit_of_work.numbered_rows`) and their applied records, each with the
    global position written (``source``, :func:`.read_models.applied_row`'s), in the order
    given (#12: a creating batch's creations were a statement of their own, waited for). The
    streams are created or locked and set to their version after the events in one part, the
    events numbered after the version each stream had; the applied records read the positions
    the events' part returns (one statement: no other part writes the store's tables, and the
    other applied records' part records other ids: the events' ids are new)."""
    templates = [
        t.replace("{g}", "{p0}")
        .replace("{a}", "{p1}")
        .replace("{s}", "{p2}")
        .replace("{n}", "{p3}")
        .replace("{w}", "{p4}")
        for t in _APPENDED
    ]
    statement.add(templates, (rows_argument(rows), source))


# --- the service loop's facts: surveys, complaints and their steps, corrective actions,
# renegotiations, business events (#12) ---------------------------------------------------------

SURVEY = "survey"
BUSINESS = "business"
RENEGOTIATION = "renegotiation"
RECEIVED = "complaint_received"
COMPLAINT_SET = "complaint_set"
PLANNED = "action_planned"
COMPLETED = "action_completed"

ServiceLoopRow = tuple[str, tuple[Any, ...]]
"""A service-loop write collected: its kind and its row, whose first value is the client's
id (a re-projection drops the client's rows by it)."""

_SCORES = ["double precision"] * 5
_OWN_ROWS = {
    SURVEY: (
        "INSERT INTO fu_surveys (client_id, event_id, branch_id, rm_id, visit_id, answered_at, "  # noqa: S608 - fixed identifiers, bound values
        "attitude, professionalism, response_speed, risk_management, convenience) "
        f"SELECT {_rows(['text', 'uuid', 'text', 'text', 'text', 'timestamptz', *_SCORES])} "
        f"FROM {_EACH_ROW} ON CONFLICT (event_id) DO NOTHING"
    ),
    BUSINESS: (
        "INSERT INTO fu_business_events (client_id, event_id, occurred_at, product_risk, amount) "  # noqa: S608 - fixed identifiers, bound values
        f"SELECT {_rows(['text', 'uuid', 'timestamptz', 'text', 'numeric'])} "
        f"FROM {_EACH_ROW} ON CONFLICT DO NOTHING"
    ),
    RENEGOTIATION: (
        "INSERT INTO fu_renegotiations (client_id, event_id, branch_id, rm_id, subject, reason, "  # noqa: S608 - fixed identifiers, bound values
        "renegotiated_at, promised_by) "
        f"SELECT {_rows(['text', 'uuid', *['text'] * 4, 'timestamptz', 'timestamptz'])} "
        f"FROM {_EACH_ROW} ON CONFLICT DO NOTHING"
    ),
}
""":func:`.read_models.record_survey`'s insert and the service-loop facts' inserts of a row of
the event's own (:func:`.service_loop_facts.record_service_loop_facts`), over rows: keyed by
the event's id, ``DO NOTHING`` (the first kept: :func:`_reduced`)."""

COMPLAINT_COLUMNS = {
    "status": "text",
    "owner_id": "text",
    "acknowledged_at": "timestamptz",
    "resolved_at": "timestamptz",
    "confirmed_at": "timestamptz",
    "satisfied": "boolean",
    "closed_at": "timestamptz",
    "problem": "text",
    "product_id": "text",
    "product_category": "text",
    "complex_case": "boolean",
    "root_cause": "text",
}
"""The ``fu_complaints`` columns an ``UPDATE`` of a complaint sets (a step's,
:func:`.read_models.record_complaint_step`; the service-loop facts',
:func:`.service_loop_facts.complaint_columns`), in the order of their values in a row."""


def _value(i: int, t: str) -> str:
    """Value ``i`` of a part's row ``r``, read as ``t`` (as :func:`_rows` reads each)."""
    return f"r->>{i}" if t == "text" else f"(r->>{i})::{t}"


COMPLAINT_DEFAULTS: dict[str, Any] = {"status": "received", "complex_case": False}
"""What a complaint's row holds in the :data:`COMPLAINT_COLUMNS` its receipt's insert does not
name (``fu_complaints``' defaults, followup migrations 002 and 006; the others null)."""

_COMPLAINTS_NEW = (
    "INSERT INTO fu_complaints (client_id, complaint_id, branch_id, rm_id, severity, topic, "  # noqa: S608 - fixed identifiers, bound values
    f"received_at, {', '.join(COMPLAINT_COLUMNS)}) "
    f"SELECT {_rows(['text'] * 6 + ['timestamptz', *COMPLAINT_COLUMNS.values()])} "
    f"FROM {_EACH_ROW} ON CONFLICT (client_id, complaint_id) DO NOTHING"
)
"""Complaints received in the batch, where no row is yet: the first receipt's row with the
last receipt's severity and topic and each column the later steps and facts set (the last
value; the others their defaults, :data:`COMPLAINT_DEFAULTS`). A row there already is left to
:data:`_COMPLAINTS_SET` (the statement's one snapshot: it does not see the rows inserted here,
so no row is changed twice)."""


_RECEIVED_AT = 3 + len(COMPLAINT_COLUMNS)
"""Where a :data:`_COMPLAINTS_SET` row says whether the batch received the complaint, its
severity and topic following."""

_COMPLAINTS_SET = (
    "UPDATE fu_complaints AS c SET "  # noqa: S608 - fixed identifiers, bound values
    + ", ".join(
        [
            *(
                f"{c} = CASE WHEN r->2 ? '{c}' THEN {_value(3 + i, t)} ELSE c.{c} END"
                for i, (c, t) in enumerate(COMPLAINT_COLUMNS.items())
            ),
            *(
                f"{c} = CASE WHEN (r->>{_RECEIVED_AT})::boolean "
                f"THEN r->>{_RECEIVED_AT + 1 + i} ELSE c.{c} END"
                for i, c in enumerate(("severity", "topic"))
            ),
        ]
    )
    + f" FROM {_EACH_ROW} WHERE c.client_id = r->>0 AND c.complaint_id = r->>1"
)
"""Every complaint the batch writes, as a row there already ends (no row: nothing, as a step's
``UPDATE``): the columns named (``r->2``) take the last value set, the others keep the row's;
received in the batch, the last receipt's severity and topic (its upsert's ``DO UPDATE``)."""

_ACTIONS_PLANNED = (
    "INSERT INTO fu_corrective_actions (client_id, complaint_id, action_id, branch_id, "  # noqa: S608 - fixed identifiers, bound values
    "root_cause, action_kind, owner_id, planned_at, due_at, completed_at) "
    f"SELECT {_rows(['text'] * 7 + ['timestamptz'] * 3)} FROM {_EACH_ROW} ON CONFLICT DO NOTHING"
)
"""Corrective actions planned in the batch, where no row is yet: the first plan, completed at
the first completion after it (a row there already: :data:`_ACTIONS_COMPLETED`)."""

_ACTIONS_COMPLETED = (
    "UPDATE fu_corrective_actions AS a "  # noqa: S608 - fixed identifiers, bound values
    "SET completed_at = COALESCE(a.completed_at, (r->>3)::timestamptz) "
    f"FROM {_EACH_ROW} "
    "WHERE a.client_id = r->>0 AND a.complaint_id = r->>1 AND a.action_id = r->>2"
)
"""Corrective actions completed in the batch, as a row there already ends: the first
completion's instant, where the row has none."""


def _key_width(kind: str) -> int:
    return 3 if kind in (PLANNED, COMPLETED) else 2


def joins_collected(collected: Sequence[ServiceLoopRow], kind: str, row: tuple[Any, ...]) -> bool:
    """Whether ``row`` can join the rows ``collected`` (:func:`add_service_loop` writes them as
    the writes in turn would): a complaint's receipt (a corrective action's plan) only if its
    complaint's (action's) collected rows are none or begin with one, since whether a step
    (completion) before it changed anything depends on a row the batch does not know. Otherwise
    the caller writes those collected first."""
    if kind not in (RECEIVED, PLANNED):
        return True
    family = (RECEIVED, COMPLAINT_SET) if kind == RECEIVED else (PLANNED, COMPLETED)
    width = _key_width(kind)
    key = row[:width]
    for k, r in collected:
        if k in family and r[:width] == key:
            return k == kind
    return True


def _reduced(
    rows: Sequence[ServiceLoopRow],
) -> tuple[
    dict[str, dict[Any, tuple[Any, ...]]],
    dict[tuple[Any, ...], tuple[list[Any] | None, dict[str, Any]]],
    dict[tuple[Any, ...], list[Any]],
]:
    """The rows reduced: own rows by kind and event id, complaints (their first receipt, or
    None, and the columns set) and corrective actions (their first plan, or None, and the
    first completion's instant) by key, in the order first met."""
    own: dict[str, dict[Any, tuple[Any, ...]]] = {}
    complaints: dict[tuple[Any, ...], tuple[list[Any] | None, dict[str, Any]]] = {}
    actions: dict[tuple[Any, ...], list[Any]] = {}
    for kind, row in rows:
        if kind in _OWN_ROWS:
            own.setdefault(kind, {}).setdefault(row[1], row)
        elif kind == RECEIVED:
            kept = complaints.get(row[:2])
            if kept is None:
                complaints[row[:2]] = (list(row), {})
            elif kept[0] is None:
                raise ValueError(f"a complaint received after its steps: {row[:2]}")
            else:
                kept[0][4:6] = row[4:6]  # a later receipt sets the severity and topic
        elif kind == COMPLAINT_SET:
            complaints.setdefault(row[:2], (None, {}))[1].update(row[2])
        elif kind == PLANNED:
            action = actions.get(row[:3])
            if action is None:
                actions[row[:3]] = [row, None]
            elif action[0] is None:
                raise ValueError(f"a corrective action planned after its completion: {row[:3]}")
        elif kind == COMPLETED:
            action = actions.setdefault(row[:3], [None, None])
            if action[1] is None:
                action[1] = row[3]  # the first completion's instant is kept
        else:
            raise ValueError(f"not a service-loop write: {kind}")
    return own, complaints, actions


def add_service_loop(statement: CollectedStatement, rows: Sequence[ServiceLoopRow]) -> None:
    """The service loop's writes collected (in the order made; :func:`joins_collected` held for
    each), as parts of the statement (#12: each was a statement of its own per event). A
    statement cannot change a row twice: each row is reduced to what the writes in turn would
    leave. Own rows (keyed by the event's id): the first. A complaint received in the batch, with
    no row yet: its first receipt (its branch, RM and instant), the last receipt's severity and
    topic, and each column its later steps and facts set, the last value; with a row (received
    or not): the columns set, each the last value (and the severity and topic). A corrective
    action planned, with no row yet: its first plan and the first completion after it; with a
    row: the first completion. Every part is sent, with no rows where the batch has none (#12:
    the statement's text then varies only by whether the batch has any service-loop write; a
    text per set of parts made more texts than a connection's cache of prepared statements
    holds). Rows in key order."""
    if not rows:
        return
    own, complaints, actions = _reduced(rows)
    for kind, template in _OWN_ROWS.items():
        kept = own.get(kind, {})
        statement.add_rows(template, sorted(kept.values(), key=lambda r: (r[0], str(r[1]))))
    received: list[tuple[Any, ...]] = []
    updated: list[tuple[Any, ...]] = []
    for key in sorted(complaints):
        first, named = complaints[key]
        values = [named.get(c) for c in COMPLAINT_COLUMNS]
        if first is None:
            updated.append((*key, list(named), *values, False, None, None))
            continue
        new = [named[c] if c in named else COMPLAINT_DEFAULTS.get(c) for c in COMPLAINT_COLUMNS]
        received.append((*first, *new))
        updated.append((*key, list(named), *values, True, first[4], first[5]))
    planned: list[tuple[Any, ...]] = []
    completed: list[tuple[Any, ...]] = []
    for key in sorted(actions):
        plan, completed_at = actions[key]
        if plan is not None:
            planned.append((*plan, completed_at))
        if completed_at is not None:
            completed.append((*key, completed_at))
    statement.add_rows(_COMPLAINTS_NEW, received)
    statement.add_rows(_COMPLAINTS_SET, updated)
    statement.add_rows(_ACTIONS_PLANNED, planned)
    statement.add_rows(_ACTIONS_COMPLETED, completed)
