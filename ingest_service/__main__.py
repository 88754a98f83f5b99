"""``python -m ingest_service``."""

from ingest_service.main import main

main()
