-- Reconciliation (issue 13): for every event the consumer appended, the event store it came
-- from and its global position there, written in the transaction that appends the entry.
-- `branchline reconcile` compares them with the stores; the last position applied per store is
-- max(global_position) of that store. Entries appended before this table existed, and audit's
-- own entries (audit.read, audit.pruned), have no row: reconcile matches events by id.
CREATE TABLE audit_source_positions (
    source          text   NOT NULL,
    global_position bigint NOT NULL,
    event_id        uuid   NOT NULL UNIQUE,
    position        bigint NOT NULL,
    PRIMARY KEY (source, global_position)
);

CREATE TRIGGER audit_source_positions_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_source_positions
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_source_positions_no_truncate
    BEFORE TRUNCATE ON audit_source_positions
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();
