-- branchline: no-transaction
-- fu_applied_events_by_seq as a BRIN index (#12). Its one reader, the running self-check's
-- order step (adapters.reconciling.UNORDERED: `applied_seq > $mark` among the unkept events),
-- finds almost nothing per check, yet as a B-tree (migration 023) it took an entry for each of
-- the two rows a load event applies. applied_seq is an identity appended in order, so a BRIN
-- range answers `> $mark` by the table's last pages (the ranges not summarised yet are always
-- read, and every row found is rechecked), and is written once a range, not once a row. A row
-- that lands in an early page's freed space widens that page's range, so it is still found.
-- Measured in docs/performance.md, Round 36, "The followup's write amplification per event".
--
-- Built beside the B-tree under another name, then the B-tree dropped and the new index renamed:
-- CONCURRENTLY both (the table holds a row per event ever applied and the worker writes it in
-- every unit of work: SHARE UPDATE EXCLUSIVE, writes go on), the rename a SHARE UPDATE
-- EXCLUSIVE lock of a moment (a DO block: it renames only what is there to rename, so a run
-- interrupted before it is finished by the next); the order step always has one index or the
-- other.
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_applied_events_by_seq_brin ON fu_read.fu_applied_events USING brin (applied_seq) WITH (autosummarize = on);
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_applied_events_by_seq;
DO $$ BEGIN IF to_regclass('fu_read.fu_applied_events_by_seq_brin') IS NOT NULL AND to_regclass('fu_read.fu_applied_events_by_seq') IS NULL THEN ALTER INDEX fu_read.fu_applied_events_by_seq_brin RENAME TO fu_applied_events_by_seq; END IF; END $$;
