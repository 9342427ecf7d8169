-- Issue 5: the read models move into their own schema, `fu_read`, so a rebuild can build a
-- fresh copy beside them (`fu_rebuild_<n>`, cloned with CREATE TABLE ... LIKE) and swap it in
-- with two schema renames in one transaction (blue/green). Every query names its tables
-- without a schema: the connections' search_path (`fu_read, public`) finds them. The event
-- store (es_*), the test clock and the rebuild history stay in `public`: they are not derived.

CREATE SCHEMA fu_read;
-- Sessions of this database find the read models by default (psql, other tools, processes
-- that open their own connections); the services also set it on their pools, and the
-- migration runner sets `public` so nothing else is ever created in fu_read.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = fu_read, public', current_database());
END $$;
ALTER TABLE fu_applied_events SET SCHEMA fu_read;
ALTER TABLE fu_clients SET SCHEMA fu_read;
ALTER INDEX fu_read.fu_clients_rm RENAME TO fu_clients_by_rm;

-- D-09 facts of a client; the stage shown is computed from them at read time, the stored
-- `lifecycle_stage` is the stage as of the client's latest event (what the rules saw).
ALTER TABLE fu_read.fu_clients
    ADD COLUMN risk_tolerance          text,
    ADD COLUMN risk_level              text,
    ADD COLUMN identity_verified_at    timestamptz,
    ADD COLUMN first_business_at       timestamptz,
    ADD COLUMN last_business_at        timestamptz,
    ADD COLUMN assets_under_management numeric NOT NULL DEFAULT 0,
    ADD COLUMN account_closed_at       timestamptz;

-- Follow-up tasks (API.md "Followup API"); sla_state is computed at read time from due_at.
CREATE TABLE fu_read.fu_tasks (
    id                 uuid PRIMARY KEY,
    kind               text NOT NULL,
    rule               text NOT NULL,
    client_id          text NOT NULL,
    branch_id          text,
    assignee           text NOT NULL,
    subject            text NOT NULL,
    opened_at          timestamptz NOT NULL,
    due_at             timestamptz NOT NULL,
    deadline_profile   text NOT NULL,
    source_event_id    uuid NOT NULL,
    status             text NOT NULL DEFAULT 'open',
    closed_at          timestamptz,
    closed_by_event_id uuid,
    close_reason       text,
    escalated_to       text,
    overdue_at         timestamptz,
    outcome            text
);
CREATE INDEX fu_tasks_work_list ON fu_read.fu_tasks (assignee, due_at, id);
CREATE INDEX fu_tasks_by_due ON fu_read.fu_tasks (due_at, id);
CREATE INDEX fu_tasks_open_of_client ON fu_read.fu_tasks (client_id) WHERE status = 'open';

-- Durable timers (decision 8): claimed with FOR UPDATE SKIP LOCKED; a fired timer keeps the id
-- of the event it recorded.
CREATE TABLE fu_read.fu_timers (
    id             uuid PRIMARY KEY,
    task_id        uuid NOT NULL,
    client_id      text NOT NULL,
    kind           text NOT NULL,
    fire_at        timestamptz NOT NULL,
    fired_at       timestamptz,
    fired_event_id uuid
);
CREATE INDEX fu_timers_due ON fu_read.fu_timers (fire_at, id) WHERE fired_at IS NULL;
CREATE INDEX fu_timers_of_task ON fu_read.fu_timers (task_id);

-- Facts of the D-12 quality measures.
CREATE TABLE fu_read.fu_visits (
    client_id  text NOT NULL,
    visit_id   text NOT NULL,
    branch_id  text,
    rm_id      text,
    arrived_at timestamptz,
    started_at timestamptz,
    ended_at   timestamptz,
    closed_at  timestamptz,
    category   text,
    outcome    text,
    PRIMARY KEY (client_id, visit_id)
);
CREATE INDEX fu_visits_by_arrival ON fu_read.fu_visits (arrived_at);

CREATE TABLE fu_read.fu_surveys (
    event_id        uuid PRIMARY KEY,
    client_id       text NOT NULL,
    branch_id       text,
    rm_id           text,
    visit_id        text,
    answered_at     timestamptz NOT NULL,
    attitude        double precision NOT NULL,
    professionalism double precision NOT NULL,
    response_speed  double precision NOT NULL,
    risk_management double precision NOT NULL,
    convenience     double precision NOT NULL
);
CREATE INDEX fu_surveys_of_client ON fu_read.fu_surveys (client_id, answered_at);

CREATE TABLE fu_read.fu_complaints (
    client_id       text NOT NULL,
    complaint_id    text NOT NULL,
    branch_id       text,
    rm_id           text,
    severity        text NOT NULL,
    topic           text,
    received_at     timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'received',
    owner_id        text,
    acknowledged_at timestamptz,
    resolved_at     timestamptz,
    confirmed_at    timestamptz,
    satisfied       boolean,
    closed_at       timestamptz,
    PRIMARY KEY (client_id, complaint_id)
);
CREATE INDEX fu_complaints_by_receipt ON fu_read.fu_complaints (received_at);

-- The test clock (dev mode only): one row, the offset from the system clock. Durable, so the
-- API and the worker processes share it (the worker's timer runner reads the same time).
CREATE TABLE fu_clock (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    "offset"   interval NOT NULL DEFAULT interval '0',
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO fu_clock (singleton) VALUES (true);

-- Rebuilds of the read models: numbering of the blue/green schemas and their history.
CREATE TABLE fu_rebuilds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schema_name text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    events      bigint,
    skipped     bigint
);
