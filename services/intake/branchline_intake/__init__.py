"""branchline_intake."""
