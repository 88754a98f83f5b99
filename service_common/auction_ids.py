"""What an auction id may look like, for every service that receives one from outside."""

from __future__ import annotations

import re

MAX_AUCTION_ID_LENGTH = 128
# Mongo ObjectIds, UUIDs and slugs all fit; anything else (spaces, quotes, operators) is refused.
_AUCTION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def auction_id_problem(auction_id: str) -> str | None:
    """Why ``auction_id`` is not acceptable, or None if it is.

    One rule for every service: the ingest service rejects such a snapshot or call, and the GraphQL
    API refuses the id itself, as a typed result, instead of relaying a gRPC error.
    """
    if not auction_id:
        return "auction id is empty"
    if len(auction_id) > MAX_AUCTION_ID_LENGTH:
        return f"auction id is longer than {MAX_AUCTION_ID_LENGTH} characters"
    if not _AUCTION_ID_PATTERN.fullmatch(auction_id):
        return "auction id may hold only letters, digits and . _ : - (starting with a letter or digit)"
    return None
