"""The socket gateway: live viewer counts over Socket.IO, minute snapshots streamed to the ingest service."""
