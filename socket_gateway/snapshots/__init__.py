"""Snapshots: sampling, minute aggregation, the durable outbox and the sender to the ingest service."""
