-- The client's RM on its refusals (console migration 004), kept by statements planned once
-- per session instead of at every firing (#12). 004's functions built their statement with
-- EXECUTE (parsed and planned each time: ~90 µs of PostgreSQL per new client, ~30 µs per
-- event in a rebuild of registrations) because they must write the tables of the schema
-- whose row fired them (a rebuild's copy, or fu_read), and a statement planned once names
-- the table it was planned against.
-- Here a firing whose table is in the session's current schema (current_schema(): the first
-- schema of search_path that exists) runs a static statement, whose unqualified names
-- resolve through that search_path: the worker's, the API's and the journal's connections
-- (fu_read,public) and a rebuild's (fu_rebuild_<n>,public), i.e. every writer of the
-- service. PostgreSQL plans it once per session and plans it again when the names could
-- resolve elsewhere: a change of search_path, and any rename of a schema (the swap's
-- ALTER SCHEMA ... RENAME invalidates every cached plan), so after a swap the same session
-- writes the new fu_read (test_a_session_planned_before_a_swap_writes_the_swapped_in_tables).
-- Any other firing (a table written by its qualified name from a session whose search_path
-- starts elsewhere) takes 004's dynamic statement, unchanged.
-- The triggers are 004's (their functions are replaced in place), so pg_schemas.clone_schema
-- copies them as before. (A temporary table named fu_clients or fu_refusals in the session
-- would shadow the static names; no writer creates one.)
-- enable_seqscan off, for the functions only: a statement planned once keeps its plan until
-- the table's statistics change, and one planned while the table was analysed empty (a
-- rebuild's first ANALYZE before any refusal) is a sequential scan, kept while the table grows
-- (measured: 20 ms per new client at 50,000 refusals); each statement here is an equality on
-- an indexed client_id (fu_refusals_client, fu_clients' key), read by index at any size.
CREATE OR REPLACE FUNCTION public.fu_refusal_takes_clients_rm() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    IF NEW.client_id IS NULL THEN
        NEW.rm_id := NULL;
    ELSIF TG_TABLE_SCHEMA = current_schema() THEN
        SELECT c.rm_id INTO NEW.rm_id FROM fu_clients c WHERE c.client_id = NEW.client_id;
    ELSE
        EXECUTE format('SELECT rm_id FROM %I.fu_clients WHERE client_id = $1', TG_TABLE_SCHEMA)
            INTO NEW.rm_id USING NEW.client_id;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION public.fu_clients_rm_to_refusals() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    here constant boolean := TG_TABLE_SCHEMA = current_schema();
BEGIN
    -- A client deleted, or its row given another client id (no writer does; kept as 004
    -- has it): the former client's refusals have no known client's RM any more.
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.client_id IS DISTINCT FROM NEW.client_id)
    THEN
        IF here THEN
            UPDATE fu_refusals r SET rm_id = NULL
            WHERE r.client_id = OLD.client_id AND r.rm_id IS NOT NULL;
        ELSE
            EXECUTE format('UPDATE %I.fu_refusals SET rm_id = NULL '
                           'WHERE client_id = $1 AND rm_id IS NOT NULL', TG_TABLE_SCHEMA)
                USING OLD.client_id;
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF here THEN
        UPDATE fu_refusals r SET rm_id = NEW.rm_id
        WHERE r.client_id = NEW.client_id AND r.rm_id IS DISTINCT FROM NEW.rm_id;
    ELSE
        EXECUTE format('UPDATE %I.fu_refusals SET rm_id = $2 '
                       'WHERE client_id = $1 AND rm_id IS DISTINCT FROM $2', TG_TABLE_SCHEMA)
            USING NEW.client_id, NEW.rm_id;
    END IF;
    RETURN NEW;
END $$;
