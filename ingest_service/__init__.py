"""The ingest service: receives viewer snapshots over gRPC, stores them, and answers analytics queries."""
