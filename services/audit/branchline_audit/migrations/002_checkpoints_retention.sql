-- Signed checkpoints, cached Merkle subtrees, the clients whose personal data is withheld, and
-- the one lawful change to history: retention drops a payload but keeps every hash (D-11).
-- Roles and grants are applied after the migrations (branchline_audit.adapters.database),
-- because their names are settings.

ALTER TABLE audit_ledger ADD COLUMN pruned_at timestamptz;

-- Perfect Merkle subtrees at levels 4, 8, 12, ... (branchline_audit.domain.subtrees).
CREATE TABLE audit_merkle_nodes (
    level      smallint NOT NULL CHECK (level > 0),
    node_index bigint   NOT NULL CHECK (node_index >= 0),
    hash       bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, node_index)
);

-- C2SP tlog-checkpoints signed as C2SP signed notes (API.md, proofs).
CREATE TABLE audit_checkpoints (
    tree_size  bigint      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  bytea       NOT NULL CHECK (length(root_hash) = 32),
    note       text        NOT NULL,
    created_at timestamptz NOT NULL
);

-- D-04: clients whose personal data is restricted (erasure requested) or shredded.
CREATE TABLE audit_restricted_clients (
    client_id       text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('restricted', 'shredded')),
    since           timestamptz NOT NULL,
    source_event_id uuid        NOT NULL,
    PRIMARY KEY (client_id, state)
);

CREATE INDEX audit_ledger_appended ON audit_ledger (appended_at, position) WHERE pruned_at IS NULL;

-- Insert-only, whoever asks. The single exception is the retention procedure below: inside
-- it, and only as the table's owner, an UPDATE may replace an event by its prune marker while
-- position, event id, type, times and both hashes stay exactly as they were.
CREATE OR REPLACE FUNCTION audit_ledger_is_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested: the inner condition names audit_ledger's columns, which other tables lack.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_ledger' THEN
        IF current_setting('branchline.audit_prune', true) = 'on'
           AND current_user = (SELECT r.rolname FROM pg_class c
                               JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = TG_RELID)
           AND OLD.pruned_at IS NULL AND NEW.pruned_at IS NOT NULL
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
              HINT = 'the audit trail is never rewritten (ARCHITECTURE.md decision 6)';
END $$;

CREATE TRIGGER audit_merkle_nodes_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_merkle_nodes_no_truncate
    BEFORE TRUNCATE ON audit_merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_restricted_clients_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_restricted_clients
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_restricted_clients_no_truncate
    BEFORE TRUNCATE ON audit_restricted_clients
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();

-- The retention procedure: runs as the tables' owner (SECURITY DEFINER; EXECUTE is granted to
-- the pruner role only). The caller chose the positions under the retention policy and appends
-- the audit.pruned entry that names them in the same transaction.
CREATE FUNCTION audit_prune_entries(p_positions bigint[], p_markers jsonb[], p_at timestamptz)
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    pruned bigint;
BEGIN
    PERFORM set_config('branchline.audit_prune', 'on', true);
    UPDATE audit_ledger AS l
       SET event = m.marker, pruned_at = p_at
      FROM unnest(p_positions, p_markers) AS m(position, marker)
     WHERE l.position = m.position AND l.pruned_at IS NULL;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    PERFORM set_config('branchline.audit_prune', '', true);
    RETURN pruned;
END $$;
