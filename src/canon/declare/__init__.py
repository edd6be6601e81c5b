"""canon.declare."""
