"""The GraphQL API: the frontend's only door, a facade over the ingest service's gRPC API."""
