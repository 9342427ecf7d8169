-- #12: ANALYZE (autovacuum's included) builds no statistics for `envelope`, the whole event
-- as jsonb. Building them detoasts and compares a sample of up to 30,000 envelopes: on
-- 50,000 events, 6.7–7.9 s of a core, against 2.2–3.0 s without (docs/performance.md,
-- Round 9), taken from the services on the same cores when autovacuum analyses after a burst.
--
-- No statement needs them. Every statement on es_events (branchline_shared.eventstore,
-- branchline_shared.reconcile, the followup adapters) filters, joins and orders on the typed
-- columns (event_id, stream_id and stream_version, tx_id and global_position, type) and only
-- returns the envelope. The one predicate inside it, followup's look-up of task creations by
-- `envelope ->> 'causation_id'` (followup migration 011), is an expression: a column's
-- statistics describe whole jsonb values, never a member's, so its estimate never used them;
-- the expression index serving it keeps statistics of its own, which this does not touch.
-- What they did feed is the column's width (without them the planner takes jsonb's default,
-- 32 bytes, instead of the measured average, about 570): compared before and after on a
-- populated store, every statement kept its plan but one, the followup rebuild's read of
-- its own recent events at the swap (adapters/rebuild_target.py), which now sorts what a
-- sequential scan found instead of reading the whole table in log order; slower only when
-- most of the store is recent (docs/performance.md, Round 9).
--
-- SET STATISTICS changes the catalogue only: it rewrites nothing and takes a SHARE UPDATE
-- EXCLUSIVE lock (reads and appends go on; only another ANALYZE, VACUUM or DDL waits).
ALTER TABLE es_events ALTER COLUMN envelope SET STATISTICS 0;

-- ANALYZE no longer refreshes the statistics built before, nor drops them: they would keep
-- their sample of envelopes (values and all) in pg_statistic for good. Cleared where the
-- server can (PostgreSQL 18+, same lock); on an older server they stay until cleared by hand.
DO $$
BEGIN
    IF to_regprocedure('pg_clear_attribute_stats(text,text,text,boolean)') IS NOT NULL THEN
        PERFORM pg_clear_attribute_stats(n.nspname::text, c.relname::text, 'envelope', false)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = 'es_events'::regclass;
    END IF;
END $$;
