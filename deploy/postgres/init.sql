-- One database per service: each service owns its data (ARCHITECTURE.md).
CREATE DATABASE branchline_intake;
CREATE DATABASE branchline_followup;
CREATE DATABASE branchline_audit;
-- The clients' wrapped data keys (decision 7): apart, so destroying a key never touches events.
CREATE DATABASE branchline_keys;
