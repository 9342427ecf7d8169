-- Clients' data keys (ARCHITECTURE.md decision 7), in their own database shared by the
-- services that seal personal data (intake, followup), each wrapped by the master key with
-- AES-256-GCM (branchline_shared.crypto). Destroying a key (crypto-shredding, D-04) sets
-- wrapped_key to NULL: every sealed personal value of that client becomes unreadable.
CREATE TABLE pii_client_keys (
    client_id    text PRIMARY KEY,
    key_id       text NOT NULL,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
