"""Shared plumbing with no domain logic: errors, atomic writes, typed config, provenance."""
