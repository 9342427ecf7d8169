-- The stale guess's own error (#12). A guessed write that takes streams the decider remembers
-- (postgres.py, _REMEMBERED_WRITE_SQL) fails whole when a stream is no longer at its
-- remembered version or no longer ends with its remembered event: another process wrote it,
-- or a remembered decision was rolled back. The writer then runs the work the ordinary way.
-- The statement used to fail by casting a text that is no number to a number, and the writer
-- took any error as that failure; an invalid_text_representation from anything else would
-- have read as a stale guess too. This raises a SQLSTATE of Branchline's own instead:
--
--   BL001  stale_stream_guess: the streams taken were fewer than those asked for.
--
-- Class BL is none of PostgreSQL's (its manual's Appendix A: 00 to 72, F0, HV, P0, XX), so
-- neither the server nor an extension's standard code raises it: only this function does.
-- VOLATILE (the default) so the planner never evaluates it ahead of the CASE that guards it;
-- it is called only when the guess was wrong, so a write that stands costs no call.
CREATE FUNCTION es_stale_stream_guess(taken bigint, asked integer) RETURNS boolean
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'stale stream guess: % of % streams taken', taken, asked
        USING ERRCODE = 'BL001',
              HINT = 'run the work the ordinary way, decided again from what is stored';
END $$;
