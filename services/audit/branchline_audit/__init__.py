"""branchline_audit."""
