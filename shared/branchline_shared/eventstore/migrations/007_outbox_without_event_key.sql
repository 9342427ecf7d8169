-- es_outbox's foreign key to es_events dropped (#12): it was checked for every outbox row, by
-- a query of its own that looked the event up and locked it (FOR KEY SHARE: a lock written to
-- the event's row and to the WAL), about 5 µs of PostgreSQL's CPU per event written. What it
-- guarded holds by construction: an outbox row is inserted only by the statement that inserts
-- its event (the event store's write, and the followup store's: one statement each, all of it
-- or none), or for an event read from es_events (a re-queue: branchline_shared.reconcile.
-- stores.requeue); and an event is never removed (es_events refuses UPDATE, DELETE and
-- TRUNCATE: migration 001). The index on es_outbox (event_id) (migration 003) is kept: the re-queue reads by it.
ALTER TABLE es_outbox DROP CONSTRAINT IF EXISTS es_outbox_event_id_fkey;
