-- branchline: no-transaction
-- An owner's and a kind's tasks by status, bounded on every plan (#12). An RM's (or a team
-- member's) page by status "done" or "cancelled" read the RM's entries of fu_tasks_work_list
-- (assignee, due_at, id) and filtered on status: a rare status read the RM's whole history.
-- An admin's list by kind (no RM, client or team) walked fu_tasks_by_due (or the status's
-- part of it, 017) and filtered on kind: a rare kind read every task to the table's end.
--
-- fu_tasks_owner_by_status (assignee, status, due_at, id) replaces both fu_tasks_work_list
-- and 015's fu_tasks_open_work_list: a status page pins (assignee, status) and walks due_at,
-- the open and SLA pages included; the page with no status is read status by status, each a
-- walk of at most a page, merged (queries.list_tasks), and the default team's walk over the
-- assignees reads its leading column as before. A task pays one owner entry where it paid
-- two (created: both; closed: work_list's only, 015's predicate drops the closed version).
-- fu_tasks_kind_by_status (kind, status, due_at, id) serves the kind the same way; it is
-- new, one entry per task created and one per task closed (closing was not a HOT update
-- already: 014's partial indexes have status in their predicates). A rebuild builds both
-- after its load (rebuild_target.DEFERRED_INDEXES).
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_owner_by_status ON fu_read.fu_tasks (assignee, status, due_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS fu_tasks_kind_by_status ON fu_read.fu_tasks (kind, status, due_at, id);
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_tasks_open_work_list;
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_tasks_work_list;
