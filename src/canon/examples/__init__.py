"""Example projects that ``canon init --example NAME`` writes (package data)."""
