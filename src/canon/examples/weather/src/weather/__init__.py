"""Rain tomorrow in Seattle: a canon example project (features, train, evaluate, serve)."""
