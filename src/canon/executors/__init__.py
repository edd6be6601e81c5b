"""canon.executors."""
