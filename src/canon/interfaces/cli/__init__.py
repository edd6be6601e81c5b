"""canon.interfaces.cli."""
