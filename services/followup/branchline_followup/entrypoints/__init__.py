"""Transport edges of followup: the worker's consumer, the timer and erasure runners, and
the FastAPI routes."""
