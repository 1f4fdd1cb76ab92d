"""Counts and their history: sharded counters, snapshots, charts, listings."""
