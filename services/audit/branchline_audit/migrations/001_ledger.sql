-- The audit ledger: append-only, hash-chained (ARCHITECTURE.md decision 6; hashing defined in
-- branchline_audit.domain.canonical).

CREATE TABLE audit_ledger (
    position    bigint PRIMARY KEY CHECK (position >= 1),
    event_id    uuid   NOT NULL UNIQUE,
    event       jsonb  NOT NULL,
    event_type  text   NOT NULL,
    client_id   text,
    actor_id    text,
    branch_id   text,
    occurred_at timestamptz,
    appended_at timestamptz NOT NULL,
    prev_hash   bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea  NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_ledger_client ON audit_ledger (client_id, position);
CREATE INDEX audit_ledger_actor ON audit_ledger (actor_id, position);
CREATE INDEX audit_ledger_branch ON audit_ledger (branch_id, position);
CREATE INDEX audit_ledger_type ON audit_ledger (event_type, position);
CREATE INDEX audit_ledger_occurred ON audit_ledger (occurred_at, position);

-- History is never rewritten: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION audit_ledger_is_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_ledger is insert-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_ledger_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_ledger
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_ledger_no_truncate
    BEFORE TRUNCATE ON audit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();
