-- #12 (Round 36): where a refusal located a rewrite of the ledger (D-11), so that a process's
-- first refused round checks that spot instead of halving every signed checkpoint below the
-- refused one (branchline_audit.application.signed_leaves._last_holding_below).
--
-- A hint is a cache, never evidence: each row only says which pair of signed checkpoints to
-- check first (the last one found to hold, NULL when none did, and the next one, found not to).
-- Every reader proves both again against their signed roots, as it proves any leaf, and halves
-- as before when they do not hold and fail, are not neighbours, or are gone; a wrong, stale or
-- forged row costs only time. The latest row that fits the refused size is the one read.
--
-- Insert-only like every audit table: a located pair that moves is a new row, never an update.
CREATE TABLE audit_refusal_hints (
    hint_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    refused_size bigint      NOT NULL CHECK (refused_size > 0),
    held_size    bigint      CHECK (held_size > 0),
    failing_size bigint      NOT NULL CHECK (failing_size > 0),
    recorded_at  timestamptz NOT NULL
);

CREATE TRIGGER audit_refusal_hints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_refusal_hints
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_is_insert_only();
CREATE TRIGGER audit_refusal_hints_no_truncate
    BEFORE TRUNCATE ON audit_refusal_hints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_is_insert_only();
