"""canon.stores."""
