"""Transport edges of followup: the Faust worker and FastAPI routes."""
