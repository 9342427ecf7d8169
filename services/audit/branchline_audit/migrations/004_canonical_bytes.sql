-- Issue 9: the ledger stores the canonical bytes each entry's hash was computed from
-- (branchline_audit.domain.canonical), so re-verification hashes exactly those bytes and never
-- depends on a round trip of the event through jsonb and the typed columns. Entries appended
-- before this migration have NULL here and are verified from their columns as before. Retention
-- drops the bytes with the payload (they contain it); the hash stays proven by the chain, the
-- Merkle tree and the checkpoints (D-11).

ALTER TABLE audit_ledger ADD COLUMN canonical bytea;

-- Insert-only as before (ADR-0006), now also for the new column: the one lawful UPDATE, a
-- prune, must clear the canonical bytes and change nothing else but the event and pruned_at.
CREATE OR REPLACE FUNCTION audit_ledger_is_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested: the inner condition names audit_ledger's columns, which other tables lack.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_ledger' THEN
        IF current_setting('branchline.audit_prune', true) = 'on'
           AND current_user = (SELECT r.rolname FROM pg_class c
                               JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = TG_RELID)
           AND OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL
           AND NEW.canonical IS NULL
           AND NEW.position = OLD.position AND NEW.event_id = OLD.event_id
           AND NEW.event_type = OLD.event_type AND NEW.appended_at = OLD.appended_at
           AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
           AND NEW.client_id IS NOT DISTINCT FROM OLD.client_id
           AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id
           AND NEW.branch_id IS NOT DISTINCT FROM OLD.branch_id
           AND NEW.occurred_at IS NOT DISTINCT FROM OLD.occurred_at
           AND NEW.event - 'redaction' = OLD.event - 'data'
           AND NEW.event -> 'redaction' ->> 'reason' = 'retention'
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '% is insert-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the audit trail is never rewritten (ADR-0006)';
END $$;

CREATE OR REPLACE FUNCTION audit_prune_entries(p_positions bigint[], p_markers jsonb[],
                                               p_at timestamptz)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    pruned bigint;
BEGIN
    PERFORM set_config('branchline.audit_prune', 'on', true);
    UPDATE audit_ledger AS l
       SET event = m.marker, pruned_at = p_at, canonical = NULL
      FROM unnest(p_positions, p_markers) AS m(position, marker)
     WHERE l.position = m.position AND l.pruned_at IS NULL;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    PERFORM set_config('branchline.audit_prune', '', true);
    RETURN pruned;
END $$;
