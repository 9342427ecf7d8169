-- Read models of the web console's client page (docs/console.md). In fu_read like every read
-- model, so a blue/green rebuild makes them again from the topics.
-- The client's timeline: what happened and when, where and by whom; no personal values.
CREATE TABLE fu_read.fu_client_timeline (
    client_id   text NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_id    uuid NOT NULL,
    type        text NOT NULL,
    branch_id   text,
    actor_id    text,
    actor_role  text,
    PRIMARY KEY (client_id, occurred_at, event_id)
);
-- D-04: the consent in force per purpose (the latest grant or withdrawal).
CREATE TABLE fu_read.fu_client_consents (
    client_id  text NOT NULL,
    purpose    text NOT NULL,
    granted    boolean NOT NULL,
    changed_at timestamptz NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (client_id, purpose)
);
-- D-05: the latest risk assessment and its stated validity (NULL: the default validity).
CREATE TABLE fu_read.fu_client_assessments (
    client_id   text PRIMARY KEY,
    level       text NOT NULL,
    assessed_at timestamptz NOT NULL,
    valid_until timestamptz,
    event_id    uuid NOT NULL
);
