"""Code shared by the services: configuration helpers, logging setup, internal-key auth, shutdown."""
