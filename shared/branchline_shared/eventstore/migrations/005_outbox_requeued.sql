-- A re-queued outbox row (#12): a second publication of an event already published, queued by
-- a consumer's self-repair or `branchline reconcile --repair` (branchline_shared.reconcile.
-- stores.requeue) because some consumer missed it. The relay publishes such a row with the
-- `requeued` header, so a consumer that skips the first publication of its own events unread
-- (the followup worker: it recorded them as applied where it recorded them) still applies a
-- copy that was re-queued for it. Without a rewrite: a constant default (PostgreSQL 11+).
ALTER TABLE es_outbox ADD COLUMN requeued boolean NOT NULL DEFAULT false;

-- Rows re-queued before this migration and not yet published are marked too, so they carry
-- the header when the new relay publishes them: a row that is not its event's first. Only the
-- unpublished ones (the partial index es_outbox_unpublished finds them): the copies already on
-- the broker went out without the header whatever this says.
UPDATE es_outbox o SET requeued = true
WHERE o.published_at IS NULL
  AND EXISTS (SELECT 1 FROM es_outbox f WHERE f.event_id = o.event_id AND f.id < o.id);
