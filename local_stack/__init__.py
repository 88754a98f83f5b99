"""The whole system on one machine: ingest service, socket gateway and GraphQL API as child processes."""
