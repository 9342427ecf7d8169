-- #12: the trail's family filter (`type=followup.*`, docs/api.md) is a prefix search on
-- event_type. The (event_type, position) index of 001 uses the database collation's
-- ordering, which serves a prefix search only under the "C" collation (not C.UTF-8, not
-- en_US.UTF-8), so the family filter read the whole ledger. text_pattern_ops orders by bytes
-- whatever the collation: it serves the ledger adapter's byte range (~>=~ / ~<~) for a family
-- and, as before, `event_type =` and `= ANY` in position order. It replaces the old index, so
-- an append maintains as many indexes as before.
--
-- The runner applies a migration in a transaction, so no CONCURRENTLY: CREATE INDEX holds a
-- SHARE lock (reads go on, appends wait) while it builds (docs/audit.md, "Migrations").
-- Built before the old index is dropped: DROP INDEX takes an ACCESS EXCLUSIVE lock, held to
-- commit, so readers wait only for that last moment.
CREATE INDEX audit_ledger_type_prefix ON audit_ledger (event_type text_pattern_ops, position);
DROP INDEX audit_ledger_type;
