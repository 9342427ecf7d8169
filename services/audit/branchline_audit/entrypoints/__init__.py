"""Transport edges of audit: the ledger consumer and FastAPI routes."""
