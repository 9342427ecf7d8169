-- branchline: no-transaction
-- The task list by status "done" or "cancelled" bounded on every plan (#12). Its statement
-- (queries.list_tasks with no RM, client or team) walked fu_tasks_by_due (due_at, id) in due
-- order and filtered on status; a next page's keyset bounds that walk from below only, so for
-- a rare status (cancelled) every page read the tasks to the table's end, a first page too
-- (tests/support/generic_plans.py, open_ended). Each status is now read from its own part of
-- the tasks, as fu_tasks_open_by_due (014) serves "open": the statement names the status as
-- written so the planner sees the part serve it. Their cost on the worker: one index entry
-- per task closed (done or cancelled: the new version of the row; closing was not a HOT
-- update already, 014's partial indexes have status in their predicates); creating a task
-- adds none, an open task's overdue or escalation update changes no indexed column. No
-- index becomes redundant: fu_tasks_by_due still serves the unfiltered list. A rebuild
-- builds them after its load (rebuild_target.DEFERRED_INDEXES).
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_done_by_due ON fu_read.fu_tasks (due_at, id) WHERE status = 'done';
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_cancelled_by_due ON fu_read.fu_tasks (due_at, id) WHERE status = 'cancelled';
