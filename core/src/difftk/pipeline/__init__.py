"""Pipelines: a spec of one component per kind (stored as TOML and in every checkpoint), and the
live pipeline built from it, with every component built by one path and checked against the others."""
