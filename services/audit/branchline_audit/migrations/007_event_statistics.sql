-- #12: ANALYZE (autovacuum's included) builds no statistics for the columns that hold a whole
-- event: `event` (jsonb: entries before migration 006, and retention's prune markers) and
-- `canonical` (bytea: every entry since migration 004, the event inside its hashed bytes).
-- Building them detoasts and compares a sample of up to 30,000 entries: `ANALYZE
-- audit_ledger` on 74,000 entries took 8.7–10.3 s of a core (docs/performance.md, Round 9),
-- taken from the consumers on the same cores when autovacuum analyses after a burst.
--
-- No statement needs them. The ledger's statements (adapters/ledger.py, reconciling.py,
-- relationships.py, checkpoints.py, the retention function) filter, join and order on
-- position, event_id, event_type, client_id, actor_id, branch_id, occurred_at, appended_at
-- and pruned_at; `event` and `canonical` are only returned, or read through expressions
-- (`event ->> 'source'`, audit_entry_event(canonical, position)) in the select list, never
-- in a condition. Without statistics the planner takes the types' default width (32 bytes)
-- for them: the plans of the trail's page, the facts and reconcile's read were compared
-- before and after on a populated ledger and did not change (docs/performance.md).
--
-- A second reason, D-11: retention drops an event's payload from the ledger, but a sample
-- ANALYZE took keeps its values in pg_statistic until the next ANALYZE replaces it. Without
-- statistics no payload is copied there.
--
-- SET STATISTICS changes the catalogue only: it rewrites nothing and takes a SHARE UPDATE
-- EXCLUSIVE lock (reads and appends go on; only another ANALYZE, VACUUM or DDL waits;
-- docs/audit.md, "Migrations").
ALTER TABLE audit_ledger
    ALTER COLUMN event SET STATISTICS 0,
    ALTER COLUMN canonical SET STATISTICS 0;

-- ANALYZE no longer refreshes the statistics built before, nor drops them: they would keep
-- their sample of events for good. Cleared where the server can (PostgreSQL 18+, same
-- lock); on an older server they stay until cleared by hand.
DO $$
BEGIN
    IF to_regprocedure('pg_clear_attribute_stats(text,text,text,boolean)') IS NOT NULL THEN
        PERFORM pg_clear_attribute_stats(n.nspname::text, c.relname::text, a.name, false)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             unnest(ARRAY['event', 'canonical']) AS a(name)
        WHERE c.oid = 'audit_ledger'::regclass;
    END IF;
END $$;
