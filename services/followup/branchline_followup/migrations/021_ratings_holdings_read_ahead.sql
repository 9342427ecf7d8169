-- The batch's read ahead with two more branches (#12, Round 28): the ratings of the products
-- the batch's sales and ratings name (D-13, D-15: a statement of its own per batch with one
-- before) and the holdings of the clients whose sales or reassessments it applies (D-15: a
-- statement of its own per such event before). Otherwise followup migration 018's function:
-- VOLATILE, so under READ COMMITTED its query takes a new snapshot when it starts, after the
-- statement calling it (adapters/read_ahead.py, MARK_APPLIED_LOCKING_READING) has taken every
-- client lock it passes the count of (`after_locks`); the products' locks are taken by a
-- statement before (ADR-0013). Its query is adapters/read_ahead.py's read_ahead_query, the
-- arguments named; tests/integration/followup/test_followup_read_ahead_function.py holds the
-- two the same. A new name, not a replacement of 018's (its result has more columns, so it
-- could not be replaced in place): a worker of the previous release still running while this
-- one migrates keeps calling 018's, which is left as it was.
CREATE FUNCTION public.fu_read_ahead_held_v2(
    after_locks bigint,
    reading boolean,
    facts_of text,
    open_tasks_of text,
    places_of text,
    tasks_caused_by text,
    creations_caused_by text,
    ratings_of text,
    holdings_of text
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
    cc_envelope jsonb,
    -- fu_product_ratings: read_ahead.RATING_COLUMNS
    r_product_id text, r_event_id uuid, r_risk text, r_effective_at timestamptz,
    -- fu_holdings: read_ahead.HOLDING_COLUMNS
    h_client_id text, h_product_id text, h_product_risk text
) LANGUAGE plpgsql VOLATILE AS $read_ahead$
BEGIN
    IF NOT reading THEN
        RETURN;
    END IF;
    RETURN QUERY
SELECT k.kind, f.*, t.*, p.*, ct.*, cc.envelope, r.*, h.*
FROM (VALUES (1), (2), (3), (4), (5), (6), (7)) AS k(kind)
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
LEFT JOIN LATERAL (
    SELECT product_id, event_id, risk, effective_at FROM fu_product_ratings
    WHERE k.kind = 6 AND product_id = ANY(ARRAY(SELECT v::text FROM jsonb_array_elements_text(ratings_of::text::jsonb) AS a(v)))
) r ON true
LEFT JOIN LATERAL (
    SELECT client_id, product_id, product_risk FROM fu_holdings
    WHERE k.kind = 7 AND client_id = ANY(ARRAY(SELECT v::text FROM jsonb_array_elements_text(holdings_of::text::jsonb) AS a(v)))
) h ON true
ORDER BY k.kind, t.opened_at, t.id;
END $read_ahead$;
