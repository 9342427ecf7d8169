"""branchline_followup."""
