"""Followup adapters: PostgreSQL read models."""
