"""The event store of a writing service: ports, an in-memory and a PostgreSQL recorder, the
gap-safe log reader and the outbox relay (ADR-0001)."""
