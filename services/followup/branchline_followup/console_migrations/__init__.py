"""Migrations of the read models only the web console reads (a series of their own, so they
never collide with the numbering of followup's main series)."""
