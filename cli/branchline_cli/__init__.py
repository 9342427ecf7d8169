"""branchline_cli."""
