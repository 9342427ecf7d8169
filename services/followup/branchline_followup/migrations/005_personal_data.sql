-- D-04 access requests and erasure (docs/privacy.md).
-- Where each personal value of a client sits, so an access request can be answered with the
-- provenance of every value: the value itself only in its sealed form (AES-256-GCM under the
-- client's data key, decision 7), never in clear. Deleted when the client is shredded.
CREATE TABLE fu_read.fu_personal_values (
    client_id   text        NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    path        text        NOT NULL,
    sub_key     text        NOT NULL DEFAULT '',
    sealed      text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (event_id, path, sub_key)
);
CREATE INDEX fu_personal_values_of_client ON fu_read.fu_personal_values (client_id, occurred_at);

-- A client's erasure (D-04): restricted from the request on, shredded once the key is gone
-- (when is decided with fu_clients' end of the relationship, D-11).
CREATE TABLE fu_read.fu_privacy (
    client_id            text PRIMARY KEY,
    erasure_requested_at timestamptz,
    erasure_event_id     uuid,
    shredded_at          timestamptz,
    shred_event_id       uuid
);
CREATE INDEX fu_privacy_to_shred ON fu_read.fu_privacy (erasure_requested_at)
    WHERE erasure_requested_at IS NOT NULL AND shredded_at IS NULL;
