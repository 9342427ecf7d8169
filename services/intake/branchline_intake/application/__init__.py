"""Use cases of intake: accept events from branch systems, enforcing the standard."""
