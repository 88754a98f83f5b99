"""The ingest service's gRPC surface: servicers translating between the wire and the domain."""
