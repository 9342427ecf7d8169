"""Event envelope, the catalogue of event types and their payload models (pure, no I/O)."""
