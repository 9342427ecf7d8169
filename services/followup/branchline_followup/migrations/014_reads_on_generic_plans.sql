-- branchline: no-transaction
-- branchline: former-checksum e1a7fe2762ec3f6ab5d9ebf78b5095e128f5c9c6cc3f0aa82df5018a4bf46ecc
-- The API's and console's reads found by index on their generic plans (#12). asyncpg
-- prepares every statement and after five runs PostgreSQL may plan it blind to its values;
-- these reads then read the whole of a table that grows with every event
-- (tests/integration/followup/test_followup_read_plans.py):
--
-- * the supervisor's team board (console_queries.team_board) counts the open tasks and those
--   closed since yesterday: it now reads them as two parts, each by a partial index. Closing a
--   task changes an indexed predicate again (013 had made that update a candidate for HOT):
--   one more index entry per close, against a board that read every task ever made.
--   fu_tasks_open_by_due also serves the all-staff work lists by SLA state (open, by due_at).
-- * the quality measures (D-12) of a period read visits by COALESCE(arrived_at, started_at)
--   and surveys by answered_at; the service loop's (D-17) renegotiations by renegotiated_at;
--   a branch's clients by branch_id.
-- A rebuild's copy gets them all (LIKE INCLUDING ALL).
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_open_by_due ON fu_read.fu_tasks (due_at, id) WHERE status = 'open';
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_closed_by_time ON fu_read.fu_tasks (closed_at) WHERE status <> 'open';
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_visits_by_start ON fu_read.fu_visits ((COALESCE(arrived_at, started_at)));
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_surveys_by_answer ON fu_read.fu_surveys (answered_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_renegotiations_by_time ON fu_read.fu_renegotiations (renegotiated_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_clients_by_branch ON fu_read.fu_clients (branch_id);
