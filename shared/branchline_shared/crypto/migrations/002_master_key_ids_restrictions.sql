-- Master-key rotation (docs/privacy.md): each wrapped data key names the master key that
-- wrapped it, so old and new master keys can both be configured while
-- `branchline privacy rotate-master-key` re-wraps every data key. NULL: wrapped before key
-- ids existed (by whichever master key was configured then; unwrapping tries each one).
ALTER TABLE pii_client_keys ADD COLUMN master_key_id text;
ALTER TABLE pii_client_keys ADD COLUMN rewrapped_at timestamptz;

-- D-04 restriction register: a client who asked for erasure is restricted at once, for every
-- service that holds their keys (intake masks their values on every read from then on).
CREATE TABLE pii_client_restrictions (
    client_id       text PRIMARY KEY,
    restricted_at   timestamptz NOT NULL,
    source_event_id uuid NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
