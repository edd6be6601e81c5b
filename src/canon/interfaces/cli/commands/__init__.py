"""One module per ``canon`` subcommand, each exposing ``command``."""
