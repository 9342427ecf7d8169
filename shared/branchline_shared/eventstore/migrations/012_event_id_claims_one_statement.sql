-- Migration 011's claim (#12, D-05, docs/intake.md "A refusal and an acceptance at the same
-- moment") with its bucket locks taken by one statement, not a PL/pgSQL loop of one PERFORM
-- per bucket (Round 31). Nothing else changes: the buckets are taken in the order given
-- (sorted by the caller, each once, with its strongest mode: WITH ORDINALITY, ORDER BY it;
-- a volatile output expression is evaluated after the sort), EXCLUSIVE where exclusive[i]
-- is true, SHARED otherwise (a NULL array: all shared); then the ids are looked up afresh
-- (VOLATILE PL/pgSQL: that query's snapshot is taken after the locks).
--
-- Returns how many of ids are stored with a submission hash other than the one given beside
-- them (a NULL beside an id: stored at all).
CREATE OR REPLACE FUNCTION es_claim_event_ids(
    class integer, buckets integer[], exclusive boolean[], ids uuid[], hashes bytea[]
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found bigint;
BEGIN
    PERFORM CASE WHEN coalesce(exclusive[b.i], false)
                 THEN pg_advisory_xact_lock(class, b.bucket)
                 ELSE pg_advisory_xact_lock_shared(class, b.bucket) END
    FROM unnest(buckets) WITH ORDINALITY AS b(bucket, i)
    ORDER BY b.i;
    SELECT count(*) INTO found
    FROM unnest(ids, hashes) AS l(event_id, submission_hash)
    JOIN es_events a ON a.event_id = l.event_id
    WHERE l.submission_hash IS NULL OR a.submission_hash IS DISTINCT FROM l.submission_hash;
    RETURN found;
END $$;
