"""canon.observe."""
