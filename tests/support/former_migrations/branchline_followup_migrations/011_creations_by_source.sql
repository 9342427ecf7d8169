-- D-07 recorded task creations looked up by the event whose decision made them (#12): a batch
-- asks one key per deciding event instead of every task kind's derived creation id (about 20
-- name-based ids per event, derived and probed). A creation's causation is the task's source
-- event (application/task_creations.py), recorded so since creations were first recorded.
-- Partial: only followup.task_created rows; the lookup names the same type as a literal.
CREATE INDEX es_events_task_creation_source
    ON es_events ((envelope ->> 'causation_id'))
    WHERE type = 'followup.task_created';
-- The tasks a deciding event made due, read ahead by their source (with the creations above)
-- instead of by every kind's candidate task id. A rebuild's copy gets it too (LIKE INCLUDING ALL).
CREATE INDEX fu_tasks_by_source ON fu_read.fu_tasks (source_event_id);
