-- branchline: no-transaction
-- branchline: former-checksum 06e22b1719073e95e127987b5a42c153ff4ae12be1a1855a2481a6fa5fb0f8bd
-- #12: the trail's family filter (`type=followup.*`, docs/api.md) is a prefix search on
-- event_type. The (event_type, position) index of 001 uses the database collation's
-- ordering, which serves a prefix search only under the "C" collation (not C.UTF-8, not
-- en_US.UTF-8), so the family filter read the whole ledger. text_pattern_ops orders by bytes
-- whatever the collation: it serves the ledger adapter's byte range (~>=~ / ~<~) for a family
-- and, as before, `event_type =` and `= ANY` in position order. It replaces the old index, so
-- an append maintains as many indexes as before.
--
-- Built CONCURRENTLY, outside a transaction (the runner's no-transaction mode, #12): appends
-- go on while it builds (docs/audit.md, "Migrations"). Built before the old index is dropped,
-- also CONCURRENTLY, so a family filter always finds one of the two.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_ledger_type_prefix ON audit_ledger (event_type text_pattern_ops, position);
DROP INDEX CONCURRENTLY IF EXISTS audit_ledger_type;
