"""canon.plan."""
