"""canon.interfaces."""
