-- A rule's refusals, newest first, and the list of the rules that refused something, found
-- by index (#12): a rule's page (console_refusals.refusals_statement) reads its rule's
-- entries in the page's order, where it walked every refusal newest first; the rule filter's
-- choices (console_refusals.RULES) walk it from one rule to the next, where a DISTINCT read
-- every refusal ever recorded. A rebuild's copy gets it (LIKE INCLUDING ALL).
CREATE INDEX fu_refusals_by_rule ON fu_read.fu_refusals (rule, occurred_at DESC, event_id DESC);
