"""Audit adapters: the PostgreSQL ledger."""
