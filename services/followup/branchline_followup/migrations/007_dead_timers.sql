-- Poison stays local (docs/input-validation.md): a durable timer the runner cannot fire (its
-- task unreadable, a kind from another release, a deadline no event can hold) is dead-lettered
-- with its reason instead of failing every round for every client. A dead-lettered timer is
-- marked fired (so it is no longer claimed) and keeps why.
ALTER TABLE fu_read.fu_timers ADD COLUMN dead_reason text;
-- The same for a client's stage change by time: the client's timer is cleared, with why.
ALTER TABLE fu_read.fu_clients ADD COLUMN stage_change_dead_reason text;
