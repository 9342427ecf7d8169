-- #12 (Round 38): the refusal hints' prune (migration 011) made exact under concurrent inserts
-- and independent of which role owns the pruning function.
--
-- Concurrency. 011 took its advisory lock in the AFTER INSERT row trigger, when the new row's
-- hint_id was already drawn: an insert that drew the lower id could prune after one that drew
-- a higher id and, not seeing that row yet (uncommitted when it drew), leave it, and the other
-- one had not seen it either: 17 rows, or a superseded one left. Taken before the statement
-- draws its ids (a BEFORE INSERT statement trigger) and held to the commit, the lock makes the
-- ids follow the order of the prunes, and each prune sees every older hint committed: the rows
-- kept are exactly what the two rules give applied one insert at a time, at most 16.
--
-- Owner. 011's guard let a DELETE through only as the table's owner, so a pruning function
-- owned by another role (an operator who provisions, gives the tables to the owner role and
-- leaves the function to the login that migrated) had every prune refused and, with it, the
-- insert of any hint that supersedes one (the hint lost, a warning). The guard now lets
-- through the role the pruning function runs as (SECURITY DEFINER: its owner, whichever it is),
-- under the function's transaction-local flag, from inside a trigger only (pg_trigger_depth()
-- > 1: the DELETE of the AFTER INSERT trigger fires this guard one level deeper). A direct
-- DELETE stays refused to everyone, the owner included, even with the flag set by hand. The
-- function's owner still needs the right to delete (the tables' owner has it, a superuser has
-- it; another role only if granted DELETE): without it the insert of a superseding hint is
-- refused as before (a warning; the refusal halves as with no hint).
CREATE FUNCTION audit_refusal_hints_serialised() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'6175646974686e74'::bigint);  -- "audithnt", as in 011
    RETURN NULL;
END $$;

CREATE TRIGGER audit_refusal_hints_serialised
    BEFORE INSERT ON audit_refusal_hints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refusal_hints_serialised();

CREATE OR REPLACE FUNCTION audit_refusal_hints_superseded() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
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

CREATE OR REPLACE FUNCTION audit_refusal_hints_guard() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND pg_trigger_depth() > 1
       AND current_setting('branchline.audit_hints_superseded', true) = 'on'
       AND current_user = (SELECT pg_get_userbyid(p.proowner) FROM pg_proc AS p
                            WHERE p.oid = 'public.audit_refusal_hints_superseded()'::regprocedure)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is insert-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only a newer refusal hint deletes the ones it supersedes (migrations 011, 012)';
END $$;
