-- Reconciliation (issue 13): for every applied event, the event store it came from and its
-- global position there, and the order in which the read models applied it. `branchline
-- reconcile` compares these with the stores (missing, extra, out of order); the last position
-- applied per store is max(global_position) of that store. Rows applied before this migration
-- keep NULLs: reconcile still matches them by event id.
ALTER TABLE fu_read.fu_applied_events
    ADD COLUMN source          text,
    ADD COLUMN global_position bigint,
    ADD COLUMN applied_seq     bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX fu_applied_events_source ON fu_read.fu_applied_events (source, global_position);
