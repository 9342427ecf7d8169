-- branchline: no-transaction
-- The read model's indexes under their migrated names again, found by definition (#12).
-- Before round 18, `branchline rebuild followup` copied fu_read's tables with LIKE ...
-- INCLUDING ALL, which names each copied index after its columns (fu_tasks_work_list became
-- fu_tasks_assignee_due_at_id_idx); after its swap, a later migration naming an index missed
-- it. Followup 013's DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_tasks_open_of_client did
-- nothing on a database rebuilt before it: that index is still there under a generated name,
-- updated on every task write. The rebuild keeps the migrated names now
-- (adapters/pg_schemas.clone_schema); this repairs the databases it renamed before.
--
-- The list below is every index (keys apart, which LIKE names as a new table does) of a
-- database migrated to followup 015 and console 005, as pg_get_indexdef prints it with
-- search_path = pg_catalog, its name left out; and, last, the one a migration dropped
-- (002's fu_tasks_open_of_client, dropped by 013). For each name no fu_read index has, an index
-- of exactly that definition under a name that is none of the list's (a generated one) is
-- renamed to it: ALTER INDEX ... RENAME, a brief lock and no rebuild. Nothing else is touched:
-- a definition that differs in anything but the name is left as it is. The dropped one, so
-- named again, is then dropped CONCURRENTLY (writes continue). Both statements are harmless
-- to repeat: on a fresh database, on one already repaired, or after an interruption between
-- them, the block finds each listed name present or no match. Console 001-005's indexes are
-- in the list too: their tables are in fu_read, and the rebuild copied them with the rest.
-- (No comment inside the block: the runner joins a no-transaction statement's lines.)
DO $repair$
DECLARE
    wanted record;
    generated text;
BEGIN
    PERFORM set_config('search_path', 'pg_catalog', true);
    FOR wanted IN
        SELECT w.name, w.definition, array_agg(w.name) OVER () AS listed
        FROM (VALUES
        ('fu_applied_events_source', 'ON fu_read.fu_applied_events USING btree (source, global_position)'),
        ('fu_business_events_by_client', 'ON fu_read.fu_business_events USING btree (client_id, occurred_at)'),
        ('fu_client_events_order', 'ON fu_read.fu_client_events USING btree (client_id, source, recorded_ms, global_position)'),
        ('fu_clients_by_branch', 'ON fu_read.fu_clients USING btree (branch_id)'),
        ('fu_clients_by_rm', 'ON fu_read.fu_clients USING btree (rm_id)'),
        ('fu_clients_stage_changes', 'ON fu_read.fu_clients USING btree (stage_changes_at, client_id) WHERE (stage_changes_at IS NOT NULL)'),
        ('fu_complaints_by_receipt', 'ON fu_read.fu_complaints USING btree (received_at)'),
        ('fu_corrective_actions_by_plan', 'ON fu_read.fu_corrective_actions USING btree (planned_at)'),
        ('fu_holdings_by_product', 'ON fu_read.fu_holdings USING btree (product_id)'),
        ('fu_personal_values_of_client', 'ON fu_read.fu_personal_values USING btree (client_id, occurred_at)'),
        ('fu_privacy_to_shred', 'ON fu_read.fu_privacy USING btree (erasure_requested_at) WHERE ((erasure_requested_at IS NOT NULL) AND (shredded_at IS NULL))'),
        ('fu_refusals_by_rm', 'ON fu_read.fu_refusals USING btree (rm_id, occurred_at DESC, event_id DESC)'),
        ('fu_refusals_by_rm_rule', 'ON fu_read.fu_refusals USING btree (rm_id, rule, occurred_at DESC, event_id DESC)'),
        ('fu_refusals_by_rule', 'ON fu_read.fu_refusals USING btree (rule, occurred_at DESC, event_id DESC)'),
        ('fu_refusals_client', 'ON fu_read.fu_refusals USING btree (client_id)'),
        ('fu_refusals_recent', 'ON fu_read.fu_refusals USING btree (occurred_at DESC, event_id DESC)'),
        ('fu_renegotiations_by_time', 'ON fu_read.fu_renegotiations USING btree (renegotiated_at)'),
        ('fu_staff_training_by_staff', 'ON fu_read.fu_staff_training USING btree (staff_id, completed_at)'),
        ('fu_surveys_by_answer', 'ON fu_read.fu_surveys USING btree (answered_at)'),
        ('fu_surveys_of_client', 'ON fu_read.fu_surveys USING btree (client_id, answered_at)'),
        ('fu_tasks_by_due', 'ON fu_read.fu_tasks USING btree (due_at, id)'),
        ('fu_tasks_by_source', 'ON fu_read.fu_tasks USING btree (source_event_id)'),
        ('fu_tasks_closed_by_time', 'ON fu_read.fu_tasks USING btree (closed_at) WHERE (status <> ''open''::text)'),
        ('fu_tasks_of_client', 'ON fu_read.fu_tasks USING btree (client_id)'),
        ('fu_tasks_open_by_due', 'ON fu_read.fu_tasks USING btree (due_at, id) WHERE (status = ''open''::text)'),
        ('fu_tasks_open_work_list', 'ON fu_read.fu_tasks USING btree (assignee, due_at, id) WHERE (status = ''open''::text)'),
        ('fu_tasks_work_list', 'ON fu_read.fu_tasks USING btree (assignee, due_at, id)'),
        ('fu_timers_due', 'ON fu_read.fu_timers USING btree (fire_at, id) WHERE (fired_at IS NULL)'),
        ('fu_timers_of_client', 'ON fu_read.fu_timers USING btree (client_id)'),
        ('fu_timers_of_task', 'ON fu_read.fu_timers USING btree (task_id)'),
        ('fu_visits_by_arrival', 'ON fu_read.fu_visits USING btree (arrived_at)'),
        ('fu_visits_by_start', 'ON fu_read.fu_visits USING btree (COALESCE(arrived_at, started_at))'),
        ('fu_tasks_open_of_client', 'ON fu_read.fu_tasks USING btree (client_id) WHERE (status = ''open''::text)')
    ) AS w(name, definition)
    LOOP
        CONTINUE WHEN to_regclass(format('fu_read.%I', wanted.name)) IS NOT NULL;
        SELECT c.relname INTO generated
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'fu_read'
          AND i.indisvalid
          AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = c.oid)
          AND pg_get_indexdef(c.oid) = 'CREATE INDEX ' || quote_ident(c.relname) || ' ' || wanted.definition
          AND c.relname <> ALL (wanted.listed)
        ORDER BY c.relname
        LIMIT 1;
        IF generated IS NOT NULL THEN
            RAISE NOTICE 'fu_read.% renamed to % (its definition)', generated, wanted.name;
            EXECUTE format('ALTER INDEX fu_read.%I RENAME TO %I', generated, wanted.name);
        END IF;
    END LOOP;
END
$repair$;
DROP INDEX CONCURRENTLY IF EXISTS fu_read.fu_tasks_open_of_client;
