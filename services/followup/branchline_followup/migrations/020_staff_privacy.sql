-- A member of staff's erasure (D-04, D-11; docs/privacy.md): their own texts, sealed under
-- the key #staff/<staff_id>, are restricted from the request on and shredded when the
-- retention of their records, counted from the end of employment, has run. One row per
-- member of staff who asked; the first request's time and id, the latest end of employment
-- named.
CREATE TABLE fu_read.fu_staff_privacy (
    staff_id             text PRIMARY KEY,
    erasure_requested_at timestamptz NOT NULL,
    erasure_event_id     uuid        NOT NULL,
    employment_ended_at  timestamptz,
    shredded_at          timestamptz,
    shred_event_id       uuid
);

-- The clients a member of staff's gift records name (D-16): a legal hold on such a client
-- holds the destruction of that member of staff's texts too (the gift is part of the case).
CREATE TABLE fu_read.fu_staff_gift_clients (
    staff_id  text NOT NULL,
    client_id text NOT NULL,
    PRIMARY KEY (staff_id, client_id)
);
