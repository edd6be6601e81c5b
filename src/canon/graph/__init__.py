"""canon.graph."""
