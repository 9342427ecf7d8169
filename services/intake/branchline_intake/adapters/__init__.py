"""Intake adapters (the event store and outbox relay come from branchline_shared)."""
