-- #12: retention of a member of staff's entries (D-11; branchline_audit.domain.staff). Their
-- records are kept until the retention of their branch's profile has run from the end of
-- their employment, and while a legal hold stands on them or on a client one of their gift
-- records names: what followup decides for their texts. The two facts this needs are in
-- payloads (`staff.erasure_requested.employment_ended_at`, `staff.gift_recorded.client_id`),
-- which retention itself drops: the consumer copies them here as it appends the entry (same
-- transaction), so they outlive the entry's payload. A hold on a member of staff is already
-- an entry of the ledger (`client_id` `#staff/<staff_id>`, Round 24): nothing to copy.

-- Each erasure request naming an end of employment; the latest (by position) sets it.
CREATE TABLE audit_staff_employment_ends (
    position            bigint      PRIMARY KEY,
    staff_id            text        NOT NULL,
    employment_ended_at timestamptz NOT NULL
);

-- The clients a member of staff's gift records name (the first entry naming each).
CREATE TABLE audit_staff_gift_clients (
    staff_id  text   NOT NULL,
    client_id text   NOT NULL,
    position  bigint NOT NULL,
    PRIMARY KEY (staff_id, client_id)
);

CREATE TRIGGER audit_staff_employment_ends_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_staff_employment_ends
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_staff_employment_ends_no_truncate
    BEFORE TRUNCATE ON audit_staff_employment_ends
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_staff_gift_clients_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_staff_gift_clients
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_staff_gift_clients_no_truncate
    BEFORE TRUNCATE ON audit_staff_gift_clients
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();

-- Backfill from the entries stored before: those whose payload is still there (a pruned
-- entry's fact is gone with it; pruned under the old rule, from its own append time).
-- Idempotent (ON CONFLICT DO NOTHING); reads only the two types, through the type index.
-- The conditions are those of domain/staff.py's staff_fact_of: the envelope names the member
-- of staff and no client; the end is an instant with an offset (intake's Instant).
WITH staff_entries AS (
    SELECT position, event_type,
           coalesce(event, audit_entry_event(canonical, position)) AS e
      FROM audit_ledger
     WHERE event_type IN ('staff.erasure_requested', 'staff.gift_recorded')
       AND pruned_at IS NULL AND client_id IS NULL
), ends AS (
    INSERT INTO audit_staff_employment_ends (position, staff_id, employment_ended_at)
    SELECT position, e ->> 'staff_id', (e -> 'data' ->> 'employment_ended_at')::timestamptz
      FROM staff_entries
     WHERE event_type = 'staff.erasure_requested'
       AND jsonb_typeof(e -> 'staff_id') = 'string' AND e ->> 'staff_id' <> ''
       AND jsonb_typeof(e -> 'data' -> 'employment_ended_at') = 'string'
       AND e -> 'data' ->> 'employment_ended_at' ~ '(Z|[+-][0-9]{2}:?[0-9]{2})$'
    ON CONFLICT DO NOTHING
)
INSERT INTO audit_staff_gift_clients (staff_id, client_id, position)
SELECT DISTINCT ON (e ->> 'staff_id', e -> 'data' ->> 'client_id')
       e ->> 'staff_id', e -> 'data' ->> 'client_id', position
  FROM staff_entries
 WHERE event_type = 'staff.gift_recorded'
   AND jsonb_typeof(e -> 'staff_id') = 'string' AND e ->> 'staff_id' <> ''
   AND jsonb_typeof(e -> 'data' -> 'client_id') = 'string'
 ORDER BY e ->> 'staff_id', e -> 'data' ->> 'client_id', position
ON CONFLICT DO NOTHING;
