-- The batch's read ahead found by index on its cached plans (#12, Round 37). The function of
-- followup migration 021 runs its query through PL/pgSQL, which keeps the plan a session made
-- while the tables were nearly empty (a fresh database, before autovacuum's first ANALYZE):
-- sequential scans of fu_clients and fu_tasks whose filter searches the batch's array of ids
-- for each row, so each batch read every client and task ever written, the batch's size
-- times over (auto_explain at 900 ev/s: 354 of a 435 ms statement for a batch of 1,000 in a
-- 4,448-client table). Every branch of the query has an index (fu_clients_pkey,
-- fu_tasks_of_client, fu_tasks_by_source, es_events_task_creation_source,
-- fu_client_events_order, the ratings' and holdings' keys): with sequential scans off for the
-- function's calls only, its plans use them whatever the statistics said when they were made
-- (as console migration 005's trigger functions). 018's function, kept for a worker of an
-- older release, is left as it was.
ALTER FUNCTION public.fu_read_ahead_held_v2(bigint, boolean, text, text, text, text, text, text, text)
    SET enable_seqscan = off;
