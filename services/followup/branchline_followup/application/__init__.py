"""Use cases of followup: project events into read models; serve RMs."""
