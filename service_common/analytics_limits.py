"""What the ingest service's analytics queries answer at most, and how it says a query asked more.

Shared by the ingest service, which enforces the limit, and the GraphQL API, which checks it first
and turns the ingest service's refusal into its own words. The refusal is told apart from other
INVALID_ARGUMENTs (an auction id a MongoDB deployment does not accept, say) by a trailing metadata
entry, not by the wording of its message.
"""

from __future__ import annotations

from collections.abc import Iterable

# The most points one analytics query returns.
MAX_POINTS = 20_000

REJECTION_METADATA_KEY = "x-rejection"
POINT_LIMIT_REJECTION = "point-limit"


def point_limit_metadata() -> tuple[tuple[str, str], ...]:
    """The trailing metadata of a refusal for holding more than ``MAX_POINTS`` points."""
    return ((REJECTION_METADATA_KEY, POINT_LIMIT_REJECTION),)


def is_point_limit_rejection(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    return any(
        key == REJECTION_METADATA_KEY and value == POINT_LIMIT_REJECTION
        for key, value in trailing_metadata or ()
    )
