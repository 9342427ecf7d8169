-- A refusal and an acceptance under one event id serialised (#12, D-05, docs/intake.md
-- "A refusal and an acceptance at the same moment"). Intake records a refused event's refusal
-- under an id derived from the refused one (its own row, another id), so no unique index
-- orders a refusal of id X against another event accepted under X. Every writer that records
-- either, under an id a caller sent, claims X's bucket at the end of its transaction, after
-- its writes: SHARED for an acceptance, EXCLUSIVE for a refusal; then looks afresh for the
-- other row (an acceptance for the refusal of X, a refusal for X accepted). The one that
-- comes second finds the first's (committed: it waited for it), and its transaction is run
-- again, decided on what is stored (409 idempotency-conflict, or a resend's answer).
--
-- Buckets, not ids: a fixed number of them (intake's code constant, the same in every
-- process), so a transaction holds at most that many advisory locks, whatever its batch size
-- (a lock per id could overflow the shared lock table). The two-integer form, with a class
-- id of its own (class), never meets the single-key locks of the
-- relay or of migrations. Buckets are taken in the order given (sorted by the caller, each
-- once, with its strongest mode): every claimant takes them in one sorted pass, last, so
-- no cycle closes through them.
--
-- VOLATILE PL/pgSQL: in READ COMMITTED each query of it takes a fresh snapshot, so the
-- look-up after the locks sees what a writer that held a bucket committed, even when called
-- from within a statement whose own snapshot is older (intake's guessed write).
--
-- Returns how many of ids are stored with a submission hash other than the one given beside
-- them (a NULL beside an id: stored at all).
CREATE FUNCTION es_claim_event_ids(
    class integer, buckets integer[], exclusive boolean[], ids uuid[], hashes bytea[]
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i integer;
    found bigint;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(buckets), 0) LOOP
        IF coalesce(exclusive[i], false) THEN
            PERFORM pg_advisory_xact_lock(class, buckets[i]);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(class, buckets[i]);
        END IF;
    END LOOP;
    SELECT count(*) INTO found
    FROM unnest(ids, hashes) AS l(event_id, submission_hash)
    JOIN es_events a ON a.event_id = l.event_id
    WHERE l.submission_hash IS NULL OR a.submission_hash IS DISTINCT FROM l.submission_hash;
    RETURN found;
END $$;
