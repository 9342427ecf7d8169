-- branchline: no-transaction
-- branchline: former-checksum 6ffbff66ccae00507b2f6e1772e367e8d9e374e546a42f8133408d6bc469f797
-- A consumer's self-check (branchline_shared.reconcile) reads the store's log a page at a time
-- and looks up the outbox rows of the page's events it has not applied (#12); without this
-- index each such look-up reads the whole outbox. It also serves the repair's look-up of an
-- event's first outbox row.
CREATE INDEX CONCURRENTLY IF NOT EXISTS es_outbox_event ON es_outbox (event_id);
