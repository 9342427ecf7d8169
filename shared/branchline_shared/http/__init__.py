"""HTTP plumbing shared by the services' FastAPI entrypoints."""
