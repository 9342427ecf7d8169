"""PostgreSQL plumbing shared by the services: pools, migrations, error translation."""
