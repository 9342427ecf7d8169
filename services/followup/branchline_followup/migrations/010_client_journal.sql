-- Order-safe read models (#13, ADR-0014): every event of a client that the read models applied,
-- kept with its store, its position there and the millisecond it was recorded (the rebuild's
-- source order, docs/followup.md "Order"). An event that arrives after a later one of the same
-- client and store (a reconcile repair re-published what the broker lost) makes the client's
-- read models be projected again from these rows, in source order, in the same transaction.
-- The envelope is kept exactly as applied: personal values stay sealed under the client's key
-- (decision 7), never in clear; shredding the key makes them unreadable here as in the store.
-- A read model like the others (in fu_read): a rebuild fills its copy as it applies.
CREATE TABLE fu_read.fu_client_events (
    event_id        uuid PRIMARY KEY,
    client_id       text NOT NULL,
    source          text NOT NULL,
    global_position bigint,
    recorded_ms     bigint NOT NULL,
    envelope        jsonb NOT NULL
);
-- The one indexed check of the in-order path: is a later event of this client and store kept?
CREATE INDEX fu_client_events_order
    ON fu_read.fu_client_events (client_id, source, recorded_ms, global_position);
