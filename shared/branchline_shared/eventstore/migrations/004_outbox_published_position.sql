-- Where the broker put each published outbox row (#12): its partition and offset, as the
-- broker acknowledged them. A consumer's self-check (branchline_shared.reconcile.progress)
-- compares them with the consumer group's committed offsets, so an event the consumer has not
-- reached yet is not taken for one it missed. Rows published before this migration, and rows
-- not yet published, have none (the check then falls back to its grace period).
ALTER TABLE es_outbox ADD COLUMN published_partition integer, ADD COLUMN published_offset bigint;
