-- The append-only event store of a writing service, with its transactional outbox
-- (ARCHITECTURE.md decision 1). Shared by intake and followup.

CREATE TABLE es_streams (
    stream_id text PRIMARY KEY,
    version   integer NOT NULL DEFAULT 0 CHECK (version >= 0)
);

CREATE SEQUENCE es_global_position AS bigint;

CREATE TABLE es_events (
    global_position bigint  PRIMARY KEY DEFAULT nextval('es_global_position'),
    -- The writing transaction: readers that follow the log order by (tx_id, global_position)
    -- and only read below pg_snapshot_xmin, so a transaction that took a low position and
    -- commits late is never skipped (see EventLogReader).
    tx_id           xid8    NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid    NOT NULL UNIQUE,
    stream_id       text    NOT NULL,
    stream_version  integer NOT NULL CHECK (stream_version >= 1),
    type            text    NOT NULL,
    client_id       text    NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    -- SHA-256 of the submission without its event id: a reused id with other content is refused.
    submission_hash bytea,
    envelope        jsonb   NOT NULL,
    UNIQUE (stream_id, stream_version)
);
ALTER SEQUENCE es_global_position OWNED BY es_events.global_position;

CREATE INDEX es_events_log_order ON es_events (tx_id, global_position);
CREATE INDEX es_events_client ON es_events (client_id, global_position);

CREATE TABLE es_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid   NOT NULL REFERENCES es_events (event_id),
    topic        text   NOT NULL,
    message_key  text   NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX es_outbox_unpublished ON es_outbox (id) WHERE published_at IS NULL;

-- Events are facts: never changed, never removed.
CREATE FUNCTION es_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'es_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER es_events_no_update_delete
    BEFORE UPDATE OR DELETE ON es_events
    FOR EACH ROW EXECUTE FUNCTION es_events_are_immutable();
CREATE TRIGGER es_events_no_truncate
    BEFORE TRUNCATE ON es_events
    FOR EACH STATEMENT EXECUTE FUNCTION es_events_are_immutable();
