"""canon.apply."""
