-- branchline: no-transaction
-- branchline: former-checksum 45d5ad467535bc0efc7e27001146d4dcd8f05f43bf2496686db6996c4526ae91
-- A client's tasks and timers found by the client (#12). Re-projecting a client after a late
-- event (D-05b order; adapters/client_journal.py CLEAR_CLIENT) deletes what its own events
-- wrote, by client_id: fu_timers had no index on it and fu_tasks only a partial one for open
-- tasks, so both deletes read the whole table (a generic plan's sequential scan), a cost per
-- late event growing with every client's history.
--
-- fu_tasks: the full index replaces the partial one, so a task still costs one client index
-- entry. A query for a client's open tasks reads the client's entries and filters on status
-- (a client's tasks are few), and closing a task no longer changes an indexed column (the
-- partial index's predicate made status one), so the update can stay on its page (HOT).
-- A rebuild's copy gets both (LIKE INCLUDING ALL).
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_of_client ON fu_read.fu_tasks (client_id);
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_tasks_open_of_client;
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_timers_of_client ON fu_read.fu_timers (client_id);
