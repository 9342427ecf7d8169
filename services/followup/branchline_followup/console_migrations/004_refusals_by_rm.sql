-- A team's refusals by index (#12): the client's current RM on the refusal row (NULL: no
-- client, or a client followup does not know; only an admin's page shows those), kept by
-- triggers in the transaction of every write of fu_clients or fu_refusals, whoever makes it
-- (the worker's upsert, a rebuild's bulk writes, the client journal's clear and re-projection,
-- a replica of the previous release during an upgrade). The functions live in public, not in
-- the read-model schema: a rebuild's swap renames that schema; they write the table of the
-- schema whose row fired them (TG_TABLE_SCHEMA), so a rebuild's copies (pg_schemas.clone_schema
-- gives them the same triggers) never touch the live tables.
-- One transaction, on purpose: creating the triggers locks fu_clients against writes and
-- adding the column locks fu_refusals until the commit, so the backfill reads every client's
-- RM as it stays and no refusal is written unfilled between the backfill and the triggers.
-- The index is built in that transaction too (the backfill has just rewritten every refusal
-- under an ACCESS EXCLUSIVE lock: the table is blocked for a pass over it anyway).
CREATE FUNCTION public.fu_refusal_takes_clients_rm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.client_id IS NULL THEN
        NEW.rm_id := NULL;
    ELSE
        EXECUTE format('SELECT rm_id FROM %I.fu_clients WHERE client_id = $1', TG_TABLE_SCHEMA)
            INTO NEW.rm_id USING NEW.client_id;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION public.fu_clients_rm_to_refusals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('UPDATE %I.fu_refusals SET rm_id = NULL '
                       'WHERE client_id = $1 AND rm_id IS NOT NULL', TG_TABLE_SCHEMA)
            USING OLD.client_id;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.client_id IS DISTINCT FROM NEW.client_id THEN
        EXECUTE format('UPDATE %I.fu_refusals SET rm_id = NULL '
                       'WHERE client_id = $1 AND rm_id IS NOT NULL', TG_TABLE_SCHEMA)
            USING OLD.client_id;
    END IF;
    EXECUTE format('UPDATE %I.fu_refusals SET rm_id = $2 '
                   'WHERE client_id = $1 AND rm_id IS DISTINCT FROM $2', TG_TABLE_SCHEMA)
        USING NEW.client_id, NEW.rm_id;
    RETURN NEW;
END $$;

ALTER TABLE fu_read.fu_refusals ADD COLUMN rm_id text;

CREATE TRIGGER fu_refusals_rm BEFORE INSERT OR UPDATE OF client_id ON fu_read.fu_refusals
    FOR EACH ROW EXECUTE FUNCTION public.fu_refusal_takes_clients_rm();
CREATE TRIGGER fu_clients_rm_inserted AFTER INSERT ON fu_read.fu_clients
    FOR EACH ROW EXECUTE FUNCTION public.fu_clients_rm_to_refusals();
CREATE TRIGGER fu_clients_rm_changed AFTER UPDATE OF rm_id, client_id ON fu_read.fu_clients
    FOR EACH ROW
    WHEN (OLD.rm_id IS DISTINCT FROM NEW.rm_id OR OLD.client_id IS DISTINCT FROM NEW.client_id)
    EXECUTE FUNCTION public.fu_clients_rm_to_refusals();
CREATE TRIGGER fu_clients_rm_deleted AFTER DELETE ON fu_read.fu_clients
    FOR EACH ROW EXECUTE FUNCTION public.fu_clients_rm_to_refusals();

UPDATE fu_read.fu_refusals r SET rm_id = c.rm_id
FROM fu_read.fu_clients c WHERE c.client_id = r.client_id;

CREATE INDEX fu_refusals_by_rm ON fu_read.fu_refusals (rm_id, occurred_at DESC, event_id DESC);
CREATE INDEX fu_refusals_by_rm_rule
    ON fu_read.fu_refusals (rm_id, rule, occurred_at DESC, event_id DESC);
