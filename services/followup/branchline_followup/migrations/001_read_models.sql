-- Read models of the followup service, derived from the event topics (never the source of truth).

-- Effectively-once (decision 3): the ids of the events applied, written in the same transaction
-- as the read-model change they caused.
CREATE TABLE fu_applied_events (
    event_id   uuid PRIMARY KEY,
    type       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fu_clients (
    client_id       text PRIMARY KEY,
    client_type     text NOT NULL,
    rm_id           text NOT NULL,
    branch_id       text,
    lifecycle_stage text NOT NULL DEFAULT 'prospect',
    registered_at   timestamptz NOT NULL,
    last_event_at   timestamptz NOT NULL,
    last_contact_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fu_clients_rm ON fu_clients (rm_id);
