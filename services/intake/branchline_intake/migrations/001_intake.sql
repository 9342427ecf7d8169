-- Intake keeps its events in the shared event-store tables (branchline_shared.eventstore).
-- Refusals are stored as rule.violation_refused events there too. This file reserves the
-- intake migration series; intake-only tables come in later migrations.
SELECT 1;
