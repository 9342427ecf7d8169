-- D-08/D-09: a client's lifecycle stage changes with time alone (new → mature after the new
-- period, → churned after a year without business). The durable "stage change" timer of a
-- client lives on its read-model row: `stage_changes_at` is the next instant its stage changes
-- by time (NULL: only an event can change it), claimed by the timer runner with
-- FOR UPDATE SKIP LOCKED. `stage_as_of` is the instant the stored `lifecycle_stage` holds for
-- (the latest of the client's last event and the last stage change applied by time).
-- `last_business_event_id` names the event of `last_business_at`: the cause of a change by
-- time, so the tasks it creates have stable ids.
ALTER TABLE fu_read.fu_clients
    ADD COLUMN stage_as_of            timestamptz,
    ADD COLUMN stage_changes_at       timestamptz,
    ADD COLUMN last_business_event_id uuid;
CREATE INDEX fu_clients_stage_changes ON fu_read.fu_clients (stage_changes_at, client_id)
    WHERE stage_changes_at IS NOT NULL;
