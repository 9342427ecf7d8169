"""Use cases of audit: append events to the ledger, answer and verify."""
