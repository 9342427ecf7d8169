"""Branchline's benchmark (`make bench`): ratios against baselines measured in the same run."""
