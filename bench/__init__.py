"""`make bench`: figures measured against baselines from the same run."""
