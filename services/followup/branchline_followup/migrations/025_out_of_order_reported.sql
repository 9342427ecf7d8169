-- When the self-check first reported an applied event out of order (#12): a restarted worker
-- finds the same events again at its first check and logs only those no run reported before
-- (adapters.reconciling.read_models_order_reported). A column, not a table per finding: it is
-- written only for an event found out of order (rare: nothing the worker applies puts one out
-- of order, a broker's loss re-queued late does), and a rebuild, which puts the event in
-- order, starts from empty copies of the tables. Nullable without a default: added to the
-- catalogue only, no table rewrite.
ALTER TABLE fu_read.fu_applied_events ADD COLUMN IF NOT EXISTS order_reported_at timestamptz;
