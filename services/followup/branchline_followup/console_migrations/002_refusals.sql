-- The supervisor's refusals page (docs/console.md): the rule.violation_refused events of
-- intake's topic, without personal values. The rule's detail may quote what was sent, so only
-- the rule's id and title (system text) are kept.
CREATE TABLE fu_read.fu_refusals (
    event_id     uuid PRIMARY KEY,
    rule         text NOT NULL,
    title        text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    branch_id    text,
    client_id    text,
    refused_type text NOT NULL,
    actor_id     text NOT NULL,
    actor_role   text NOT NULL,
    submitter    text
);
CREATE INDEX fu_refusals_recent ON fu_read.fu_refusals (occurred_at DESC, event_id DESC);
CREATE INDEX fu_refusals_client ON fu_read.fu_refusals (client_id);
