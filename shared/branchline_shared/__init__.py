"""branchline_shared."""
