-- #12: ANALYZE (autovacuum's included) builds no statistics for fu_client_events.envelope,
-- the whole event as applied (migration 010), as the event store's migration 006 does for
-- es_events.envelope: building them detoasts and compares a sample of up to 30,000 events,
-- seconds of a core taken from the worker when autovacuum analyses after a burst
-- (docs/performance.md, Round 9).
--
-- No statement needs them: the journal is written by event id and read by client_id, source,
-- recorded_ms and global_position (adapters/client_journal.py, adapters/collected_writes.py;
-- the index of migration 010); the envelope is only returned, never compared. Without them
-- the planner takes jsonb's default width (32 bytes) for it: the plans were compared before
-- and after on a populated journal and did not change (docs/performance.md).
--
-- A rebuild's copy of the read models keeps the setting: CREATE TABLE ... LIKE does not copy
-- a column's statistics target, so clone_schema (adapters/pg_schemas.py) copies it.
--
-- SET STATISTICS changes the catalogue only: it rewrites nothing and takes a SHARE UPDATE
-- EXCLUSIVE lock (reads and writes go on; only another ANALYZE, VACUUM or DDL waits).
ALTER TABLE fu_read.fu_client_events ALTER COLUMN envelope SET STATISTICS 0;

-- ANALYZE no longer refreshes the statistics built before, nor drops them: they would keep
-- their sample of envelopes in pg_statistic for good. Cleared where the server can
-- (PostgreSQL 18+, same lock); on an older server they stay until cleared by hand.
DO $$
BEGIN
    IF to_regprocedure('pg_clear_attribute_stats(text,text,text,boolean)') IS NOT NULL THEN
        PERFORM pg_clear_attribute_stats('fu_read', 'fu_client_events', 'envelope', false);
    END IF;
END $$;
