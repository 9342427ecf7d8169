-- branchline: no-transaction
-- #12: before an export streams, the ledger looks for the first entry of its filters that
-- holds a time no append writes (an infinity, a year past 9999, a BC year: altered behind the
-- ledger's back), so that such an export is refused with 409 before it starts (D-11). No row
-- is altered in a sound ledger, so that look-up read the export's whole range once before the
-- first byte (then the export read it again). This index holds only the altered rows: empty
-- in a sound ledger, so an append inserts nothing into it, and the look-up reads it alone,
-- O(altered rows) (docs/audit.md, "Exports").
--
-- Its predicate is, word for word, the ledger adapter's condition for an altered row
-- (branchline_audit.adapters.altered.ALTERED_ROW: for each of appended_at, occurred_at and
-- pruned_at, NOT (the column within the times an append writes)); the planner uses the index
-- only for a query whose condition implies it, and tests/integration/audit/
-- test_audit_altered_index.py checks that both are the same expression. The bounds are
-- timestamptz constants with an explicit offset, folded when the index is created: the
-- predicate is immutable, whatever the session's time zone.
--
-- Built CONCURRENTLY, outside a transaction (the runner's no-transaction mode): appends go on
-- while it builds (docs/audit.md, "Migrations").
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_ledger_altered ON audit_ledger (position)
    WHERE NOT (appended_at >= '0001-01-01 00:00:00+00' AND appended_at < '10000-01-01 00:00:00+00')
       OR NOT (occurred_at >= '0001-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00')
       OR NOT (pruned_at >= '0001-01-01 00:00:00+00' AND pruned_at < '10000-01-01 00:00:00+00');
