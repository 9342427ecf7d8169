-- branchline: no-transaction
-- fu_tasks_by_due (due_at, id) dropped (#12). Each task's creation and each closing wrote an
-- entry in it (a closing is not a HOT update: status is in the partial indexes' predicates);
-- its only reads were the task list with no status, owner, kind or client (queries.list_tasks),
-- which reads each status's part now, by the partial indexes fu_tasks_open_by_due (014),
-- fu_tasks_done_by_due and fu_tasks_cancelled_by_due (017), at most a page each, merged. Every
-- other read of fu_tasks has an index of its own (bench.profile_task_indexes lists them:
-- tests/integration/followup/test_followup_read_plans.py keeps each bounded).
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_tasks_by_due;
