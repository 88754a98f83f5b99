"""The per-token subscription budget, one for the API process, shared by every subscription field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from graphql_api.errors import PublicError


class SubscriptionLimitReached(PublicError):
    """The caller holds as many subscriptions as its token allows."""

    code = "SUBSCRIPTION_LIMIT_REACHED"


class TokenSubscriptions:
    """The subscriptions each token's subject holds at once, over all its connections and fields.

    Args:
        max_per_token: the most one subject may hold (``GRAPHQL_MAX_SUBSCRIPTIONS_PER_TOKEN``).
    """

    def __init__(self, max_per_token: int) -> None:
        self._max_per_token = max_per_token
        self._held: dict[str, int] = {}

    @property
    def held(self) -> int:
        """Subscriptions held now, by every subject."""
        return sum(self._held.values())

    @contextmanager
    def hold(self, holder: str) -> Iterator[None]:
        """One of ``holder``'s subscriptions, for as long as the block runs.

        Raises:
            SubscriptionLimitReached: ``holder`` already holds ``max_per_token`` subscriptions.
        """
        held = self._held.get(holder, 0)
        if held >= self._max_per_token:
            raise SubscriptionLimitReached(
                f"this token already holds {held} subscriptions, the most it may (close one first)"
            )
        self._held[holder] = held + 1
        try:
            yield
        finally:
            left = self._held.get(holder, 0) - 1
            if left > 0:
                self._held[holder] = left
            else:
                self._held.pop(holder, None)
