-- A guessed write's failure when an event id it looked up, and took for not stored, is stored
-- although the write does not insert it (Round 28, #12). Intake looks up, with each event id
-- a caller sends, the id its refusal would have (a refused event's recorded refusal: D-05);
-- since Round 28 a refusal carries the refused submission's hash, so another submission under
-- a refused event's id is answered 409 idempotency-conflict, as for an accepted event's id.
-- The guessed write (the event store's GuessingUnitOfWork, used by intake alone) checks
-- those ids with this function, called only when one is stored:
--
--   BL002  looked_up_id_stored: an id taken for not stored is stored.
--
-- Class BL is Branchline's own (event store migration 010: BL001). The writer then asks
-- which ids are stored and sends those callers the ordinary way, where they are looked up.
-- VOLATILE (the default) so the planner never evaluates it ahead of the CASE that guards it.
CREATE FUNCTION es_looked_up_id_stored(found bigint) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'looked-up id stored: % of the ids taken for not stored', found
        USING ERRCODE = 'BL002',
              HINT = 'run the work the ordinary way, decided again from what is stored';
END $$;
