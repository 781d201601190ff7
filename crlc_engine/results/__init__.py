"""What a finished run gives: assignments, groups, names, corrections, splits, metrics, export."""
