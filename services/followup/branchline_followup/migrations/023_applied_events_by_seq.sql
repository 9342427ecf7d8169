-- branchline: no-transaction
-- fu_applied_events by apply sequence (#12): the running self-check's order step reads only
-- the events applied since its last check (`applied_seq > $mark`, adapters.reconciling
-- .read_models_unordered), a range of this index instead of a scan of every event ever
-- applied. CONCURRENTLY: the table holds a row per event ever applied, and the worker writes
-- it in every unit of work.
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_applied_events_by_seq ON fu_read.fu_applied_events (applied_seq);
