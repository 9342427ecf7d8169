-- #12 (Round 37): the refusal hints (migration 010) bounded. A hint is a cache of where a
-- refusal located a rewrite, never evidence (every reader proves its pair again against the
-- signed roots and halves past one that does not hold), so deleting one costs at most a later
-- process's halving, never a verdict or a place. Stored one row per halving that found a new
-- pair, the table grew without bound; now the insert of a hint deletes, in its own statement
-- and transaction, as the table's owner:
--
-- * every older hint whose failing checkpoint is at or above the new one's: the reader takes
--   the latest hint whose failing checkpoint is at or below the refused size
--   (PostgresCheckpoints.refusal_hint), so for every size such an older hint could answer the
--   new one answers first: it is never read again (superseded; deleting it changes no read);
-- * every hint but the KEPT (16) latest, the new one included: a cap whatever the pattern of
--   places (what is left after the first rule is a chain whose failing sizes grow with the
--   hint's id; a long one needs refusals at ever larger places, one per process and place).
--
-- The rows kept are therefore at most 16 (plus one per insert running concurrently with
-- another, serialised by a transaction-level advisory lock so neither deadlocks the other).
-- An insert made with the triggers off (a superuser behind the ledger's back) prunes nothing.
--
-- UPDATE and TRUNCATE stay refused for everyone, DELETE for everyone but this trigger
-- (a transaction-local flag, and only as the table's owner: the pattern of audit_prune_entries).
CREATE FUNCTION audit_refusal_hints_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('branchline.audit_hints_superseded', true) = 'on'
       AND current_user = (SELECT r.rolname FROM pg_class c
                           JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = TG_RELID)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is insert-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only a newer refusal hint deletes the ones it supersedes (migration 011)';
END $$;

DROP TRIGGER audit_refusal_hints_no_update_delete ON audit_refusal_hints;
DROP TRIGGER audit_refusal_hints_no_truncate ON audit_refusal_hints;
CREATE TRIGGER audit_refusal_hints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_refusal_hints
    FOR EACH ROW EXECUTE FUNCTION audit_refusal_hints_guard();
CREATE TRIGGER audit_refusal_hints_no_truncate
    BEFORE TRUNCATE ON audit_refusal_hints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refusal_hints_guard();

-- Runs as the table's owner (SECURITY DEFINER; provisioning makes the owner role its owner,
-- branchline_audit.adapters.database): the writer, which stores hints, may not delete any.
CREATE FUNCTION audit_refusal_hints_superseded() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'6175646974686e74'::bigint);  -- "audithnt"
    PERFORM set_config('branchline.audit_hints_superseded', 'on', true);
    DELETE FROM audit_refusal_hints
     WHERE hint_id < NEW.hint_id
       AND (failing_size >= NEW.failing_size
            OR hint_id <= (SELECT h.hint_id FROM audit_refusal_hints AS h
                            WHERE h.hint_id < NEW.hint_id
                            ORDER BY h.hint_id DESC OFFSET 15 LIMIT 1));
    PERFORM set_config('branchline.audit_hints_superseded', '', true);
    RETURN NULL;
END $$;

CREATE TRIGGER audit_refusal_hints_kept
    AFTER INSERT ON audit_refusal_hints
    FOR EACH ROW EXECUTE FUNCTION audit_refusal_hints_superseded();
