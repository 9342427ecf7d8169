-- #12: an entry appended from now on stores its event once, inside its canonical bytes (the
-- bytes its hash is computed from, migration 004), and `event` stays NULL: the jsonb copy was
-- the same JSON a second time, parsed by PostgreSQL on every append, and the hash never
-- covered it. Readers take the event from the bytes (branchline_audit.domain.canonical,
-- `stored_event`); SQL that needs a member of it uses audit_entry_event below.
--
-- No row is changed, so no history is rewritten: entries appended before keep both copies
-- and are verified as before (the bytes, and the column against them); entries from before
-- migration 004 keep their event only; pruned entries keep their marker in `event` and no
-- bytes (retention below). The constraint is checked against every existing row (a scan,
-- no rewrite) and then refuses an entry that holds neither.

ALTER TABLE audit_ledger
    ALTER COLUMN event DROP NOT NULL,
    ADD CONSTRAINT audit_ledger_event_or_bytes CHECK (event IS NOT NULL OR canonical IS NOT NULL);

-- The event inside an entry's canonical bytes: what lies between the fixed head
-- `{"appended_at":"<27 characters>","event":` (53 bytes) and the tail
-- `,"format":"branchline.audit.entry.v1","position":<position>}`. A convenience for queries
-- (reconcile's source, the retention trigger's comparison); verification never trusts it:
-- it re-hashes and decodes the bytes itself (docs/audit.md, "Canonical bytes and hashes").
CREATE FUNCTION audit_entry_event(p_canonical bytea, p_position bigint) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT convert_from(substring(p_canonical FROM 54
                                  FOR length(p_canonical) - 53 - 50
                                      - length(p_position::text)), 'UTF8')::jsonb
$$;

-- Insert-only as before; the one lawful UPDATE, a prune, compares the marker with the event
-- as stored: the column where it is set, otherwise the event inside the bytes.
CREATE OR REPLACE FUNCTION audit_ledger_is_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested: the inner condition names audit_ledger's columns, which other tables lack.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_ledger' THEN
        IF current_setting('branchline.audit_prune', true) = 'on'
           AND current_user = (SELECT r.rolname FROM pg_class c
                               JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = TG_RELID)
           AND OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL
           AND NEW.canonical IS NULL AND NEW.event IS NOT NULL
           AND NEW.position = OLD.position AND NEW.event_id = OLD.event_id
           AND NEW.event_type = OLD.event_type AND NEW.appended_at = OLD.appended_at
           AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
           AND NEW.client_id IS NOT DISTINCT FROM OLD.client_id
           AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id
           AND NEW.branch_id IS NOT DISTINCT FROM OLD.branch_id
           AND NEW.occurred_at IS NOT DISTINCT FROM OLD.occurred_at
           AND NEW.event - 'redaction'
               = coalesce(OLD.event, audit_entry_event(OLD.canonical, OLD.position)) - 'data'
           AND NEW.event -> 'redaction' ->> 'reason' = 'retention'
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '% is insert-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the audit trail is never rewritten (ADR-0006)';
END $$;
