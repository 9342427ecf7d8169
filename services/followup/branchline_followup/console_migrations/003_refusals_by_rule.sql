-- The refusals page's rule filter lists every rule that refused something (#12): read as a
-- walk of this index from one rule to the next (console_refusals.RULES), not as a DISTINCT
-- over every refusal ever recorded.
CREATE INDEX fu_refusals_by_rule ON fu_read.fu_refusals (rule);
