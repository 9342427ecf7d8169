"""Reconciliation: every event store (the source of truth) compared with what each consumer
applied (the audit ledger, the followup read models); what is missing is published again."""
