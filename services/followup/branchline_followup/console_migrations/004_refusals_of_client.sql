-- branchline: no-transaction
-- A client's refusals, newest first (#12): a named team's refusals page
-- (console_refusals.refusals_statement) reads the team's clients by their RM
-- (fu_clients_by_rm) and each client's refusals in the page's order, merged, where it walked
-- every refusal (of the rule) newest first and joined each to its client to test the RM: the
-- whole table when the team's refusals were rare. The RM stays the client's, read at the
-- page (a reassigned client takes its refusals to its new RM's team). The new index starts
-- with client_id, so it also serves whatever the former one (002, fu_refusals_client) did; a
-- refusal still costs one client index entry. A rebuild's copy gets it (LIKE INCLUDING ALL).
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_refusals_of_client ON fu_read.fu_refusals (client_id, occurred_at DESC, event_id DESC);
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_refusals_client;
