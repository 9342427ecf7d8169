-- The service loop (D-07, D-09, D-17): what the complaint analysis, the regulatory statistics,
-- the corrective-action completion and the promises-kept measure count, and the client's
-- behaviour class (D-09), all derived from the events (a rebuild reproduces them).
ALTER TABLE fu_read.fu_complaints
    ADD COLUMN problem          text,
    ADD COLUMN product_id       text,
    ADD COLUMN product_category text,
    ADD COLUMN root_cause       text,
    ADD COLUMN complex_case     boolean NOT NULL DEFAULT false;

ALTER TABLE fu_read.fu_clients
    ADD COLUMN account_closure_reason text;

-- D-17: corrective actions with owner and deadline, tracked to done.
CREATE TABLE fu_read.fu_corrective_actions (
    client_id    text NOT NULL,
    complaint_id text NOT NULL,
    action_id    text NOT NULL,
    branch_id    text,
    root_cause   text NOT NULL,
    action_kind  text NOT NULL,
    owner_id     text NOT NULL,
    planned_at   timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    completed_at timestamptz,
    PRIMARY KEY (client_id, complaint_id, action_id)
);
CREATE INDEX fu_corrective_actions_by_plan ON fu_read.fu_corrective_actions (planned_at);

-- D-17: promises renegotiated with the client before their deadline.
CREATE TABLE fu_read.fu_renegotiations (
    event_id        uuid PRIMARY KEY,
    client_id       text NOT NULL,
    branch_id       text,
    rm_id           text,
    subject         text NOT NULL,
    reason          text NOT NULL,
    renegotiated_at timestamptz NOT NULL,
    promised_by     timestamptz NOT NULL
);

-- D-09 behaviour: the client's business events (frequency) and sales by product risk.
CREATE TABLE fu_read.fu_business_events (
    event_id     uuid PRIMARY KEY,
    client_id    text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    product_risk text,
    amount       numeric
);
CREATE INDEX fu_business_events_by_client ON fu_read.fu_business_events (client_id, occurred_at);
