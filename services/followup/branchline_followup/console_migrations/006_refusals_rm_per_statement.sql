-- The RM of newly inserted clients carried to their refusals once per inserting statement,
-- not once per inserted client (#12). Console migration 004's AFTER INSERT trigger on
-- fu_clients ran per row: the worker's batch writes every new client of a batch (~50 at the
-- benchmark's load) in one INSERT ... SELECT, and each of its rows called the function (its
-- SET enable_seqscan: a GUC level entered and left per call) and ran 005's UPDATE of
-- fu_refusals on its own (an executor start, an index probe and a shutdown per client).
-- Here the trigger is FOR EACH STATEMENT with the statement's inserted rows as a transition
-- table (fu_clients_inserted): one call and one UPDATE joining those rows to their refusals,
-- read by fu_refusals_client. Same rows written as before: every refusal of an inserted client
-- takes that client's RM at the end of the inserting statement (when 004's row triggers ran
-- too, after every row of the statement), and a row the statement updated instead (ON
-- CONFLICT DO UPDATE) is not in the transition table: the row trigger on UPDATE OF rm_id,
-- client_id (004) moves its refusals, unchanged.
-- The static statement when the table is in the session's current schema, 004's dynamic form
-- otherwise, as 005 does (see there); a transition table is visible to both.
-- enable_hashjoin and enable_mergejoin off as well as enable_seqscan: the statement is planned
-- once per session and kept until the tables' statistics change, and a plan made while
-- fu_refusals was analysed empty (a rebuild's first ANALYZE) could otherwise hash or merge
-- the inserted rows with the whole of fu_refusals read by an index, kept as it grows; with
-- them off the plan is a nested loop probing fu_refusals_client once per inserted client.
-- The copies a rebuild makes (pg_schemas.clone_schema: pg_get_triggerdef of the live
-- triggers) take this trigger from this migration on; a rebuild's schema cloned before it,
-- if swapped in later, keeps 004's row trigger, which writes the same rows.
-- 004's function stays: the UPDATE and DELETE triggers call it.
CREATE FUNCTION public.fu_clients_inserted_rm_to_refusals() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
BEGIN
    IF TG_TABLE_SCHEMA = current_schema() THEN
        UPDATE fu_refusals r SET rm_id = n.rm_id
        FROM fu_clients_inserted n
        WHERE r.client_id = n.client_id AND r.rm_id IS DISTINCT FROM n.rm_id;
    ELSE
        EXECUTE format('UPDATE %I.fu_refusals r SET rm_id = n.rm_id '
                       'FROM fu_clients_inserted n '
                       'WHERE r.client_id = n.client_id AND r.rm_id IS DISTINCT FROM n.rm_id',
                       TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER fu_clients_rm_inserted ON fu_read.fu_clients;
CREATE TRIGGER fu_clients_rm_inserted AFTER INSERT ON fu_read.fu_clients
    REFERENCING NEW TABLE AS fu_clients_inserted
    FOR EACH STATEMENT EXECUTE FUNCTION public.fu_clients_inserted_rm_to_refusals();
