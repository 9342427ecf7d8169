-- The batch's read ahead in the statement that records its events and locks their clients
-- (#12: one round trip less per batch; docs/adr/0013-followup-unit-of-work.md, "Batches").
--
-- A statement reads from the snapshot taken when it starts, so the read ahead could not be
-- part of the statement that takes the clients' locks: a lock that waits for a unit holding
-- the client would be granted after that unit committed, and the same statement's reads would
-- still see the rows as they were before (ADR-0013). A VOLATILE function is different: under
-- READ COMMITTED every query it runs takes a NEW snapshot when that query starts
-- (https://www.postgresql.org/docs/current/xfunc-volatility.html). The worker's statement
-- (adapters/read_ahead.py, MARK_APPLIED_LOCKING_READING) calls this function with an argument
-- computed from the lock part (`after_locks`, the count of the locks taken, which it does not
-- otherwise read), so the function runs after every lock is granted, and its query's snapshot
-- sees what a unit it waited for committed.
--
-- The query is the read ahead of adapters/read_ahead.py (read_ahead_query), its arguments
-- named; tests/integration/followup/test_followup_read_ahead_function.py holds the two the
-- same: a change of the read ahead (a column, a branch) needs a new migration replacing this
-- function. `reading` false: nothing read (a batch with an event applied before reads after
-- its marking, as before). Created in public (migrations run with search_path = public); its
-- tables are named without a schema and found through the caller's search_path (fu_read,
-- public; a rebuild's units never call it). PL/pgSQL plans the query once per session on the
-- caller's plan_cache_mode (a unit's: generic), and again after a swap renames the schemas.
CREATE FUNCTION public.fu_read_ahead_held(
    after_locks bigint,
    reading boolean,
    facts_of text,
    open_tasks_of text,
    places_of text,
    tasks_caused_by text,
    creations_caused_by text
) RETURNS TABLE (
    row_kind int,
    -- fu_clients: the client id and read_models.FACT_COLUMNS
    f_client_id text, f_client_type text, f_rm_id text, f_branch_id text,
    f_lifecycle_stage text, f_registered_at timestamptz, f_last_event_at timestamptz,
    f_last_contact_at timestamptz, f_risk_tolerance text, f_risk_level text,
    f_identity_verified_at timestamptz, f_first_business_at timestamptz,
    f_last_business_at timestamptz, f_assets_under_management numeric,
    f_account_closed_at timestamptz, f_stage_as_of timestamptz, f_stage_changes_at timestamptz,
    f_last_business_event_id uuid,
    -- fu_tasks: read_models.TASK_COLUMNS (the open tasks)
    t_id uuid, t_kind text, t_rule text, t_client_id text, t_branch_id text, t_assignee text,
    t_subject text, t_opened_at timestamptz, t_due_at timestamptz, t_deadline_profile text,
    t_source_event_id uuid, t_status text, t_closed_at timestamptz, t_closed_by_event_id uuid,
    t_close_reason text, t_escalated_to text,
    -- the journal's latest places
    p_client_id text, p_source text, p_recorded_ms bigint, p_global_position bigint,
    -- fu_tasks: read_models.TASK_COLUMNS (the tasks the events caused)
    ct_id uuid, ct_kind text, ct_rule text, ct_client_id text, ct_branch_id text,
    ct_assignee text, ct_subject text, ct_opened_at timestamptz, ct_due_at timestamptz,
    ct_deadline_profile text, ct_source_event_id uuid, ct_status text, ct_closed_at timestamptz,
    ct_closed_by_event_id uuid, ct_close_reason text, ct_escalated_to text,
    -- es_events: the recorded task creations the events caused
    cc_envelope jsonb
) LANGUAGE plpgsql VOLATILE AS $read_ahead$
BEGIN
    IF NOT reading THEN
        RETURN;
    END IF;
    RETURN QUERY
SELECT k.kind, f.*, t.*, p.*, ct.*, cc.envelope
FROM (VALUES (1), (2), (3), (4), (5)) AS k(kind)
LEFT JOIN LATERAL (
    SELECT client_id, client_type, rm_id, branch_id, lifecycle_stage, registered_at, last_event_at, last_contact_at, risk_tolerance, risk_level, identity_verified_at, first_business_at, last_business_at, assets_under_management, account_closed_at, stage_as_of, stage_changes_at, last_business_event_id FROM fu_clients
    WHERE k.kind = 1 AND client_id = ANY(ARRAY(SELECT v::text FROM jsonb_array_elements_text(facts_of::text::jsonb) AS a(v)))
) f ON true
LEFT JOIN LATERAL (
    SELECT id, kind, rule, client_id, branch_id, assignee, subject, opened_at, due_at, deadline_profile, source_event_id, status, closed_at, closed_by_event_id, close_reason, escalated_to FROM (
        SELECT id, kind, rule, client_id, branch_id, assignee, subject, opened_at, due_at, deadline_profile, source_event_id, status, closed_at, closed_by_event_id, close_reason, escalated_to FROM fu_tasks
        WHERE k.kind = 2 AND client_id = ANY(ARRAY(SELECT v::text FROM jsonb_array_elements_text(open_tasks_of::text::jsonb) AS a(v))) OFFSET 0
    ) AS of_client WHERE status = 'open'
) t ON true
LEFT JOIN LATERAL (

        SELECT pair.client_id, pair.source, m.recorded_ms, m.global_position
        FROM (
            SELECT r->>0 AS client_id, r->>1 AS source
            FROM jsonb_array_elements(places_of::text::jsonb) AS e(r)
        ) pair
        CROSS JOIN LATERAL (
            SELECT recorded_ms, global_position FROM fu_client_events e
            WHERE e.client_id = pair.client_id AND e.source = pair.source
              AND e.global_position IS NOT NULL
            ORDER BY recorded_ms DESC, global_position DESC LIMIT 1
        ) m
    WHERE k.kind = 3
) p ON true
LEFT JOIN LATERAL (
    SELECT id, kind, rule, client_id, branch_id, assignee, subject, opened_at, due_at, deadline_profile, source_event_id, status, closed_at, closed_by_event_id, close_reason, escalated_to FROM fu_tasks
    WHERE k.kind = 4 AND source_event_id = ANY(ARRAY(SELECT v::uuid FROM jsonb_array_elements_text(tasks_caused_by::text::jsonb) AS a(v)))
) ct ON true
LEFT JOIN LATERAL (
    SELECT envelope FROM es_events
    WHERE k.kind = 5 AND type = 'followup.task_created'
        AND envelope ->> 'causation_id' = ANY(ARRAY(SELECT v::text FROM jsonb_array_elements_text(creations_caused_by::text::jsonb) AS a(v)))
) cc ON true
ORDER BY k.kind, t.opened_at, t.id;
END $read_ahead$;
