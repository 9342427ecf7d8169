"""Transport edges of intake: FastAPI routes."""
