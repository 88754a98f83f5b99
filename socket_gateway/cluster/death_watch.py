"""Closed minutes held back until no node's death can still touch them; those a death did, partial."""

from __future__ import annotations

from dataclasses import replace

from socket_gateway.cluster.store import RedisCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot


class DeathWatch:
    """Holds each closed minute until every member listed in Redis has renewed its lease since the
    minute closed, then marks it ``partial`` if a reaped member's death window overlaps it.

    A member killed with SIGKILL stays in every count until a survivor reaps it, a lease and up to a
    heartbeat after its last renewal, while its viewers reconnect to the survivors at once and are
    counted twice: a minute that closed in between holds more viewers than there were, and the reap
    comes too late to flag it. So the minute waits (normally until the next sample: every live member
    renews each third of a lease) and is flagged from the dead member's **last renewal** on, as its
    death window in Redis says. Every time compared is on Redis's clock (lease expiries, reaps): the
    minute's close is marked by the latest renewal Redis held then, so a node's own clock (a test's
    manual one included) never meets Redis's. While Redis fails the minutes wait too (none dropped);
    a stop releases them, ``partial``, since nothing proves them then.

    Args:
        store: the Redis adapter.
        interval_seconds: the snapshot interval.
        heartbeat_seconds: how often a member renews its lease (a third of it).
    """

    def __init__(self, store: RedisCounts, interval_seconds: int, heartbeat_seconds: float) -> None:
        self._store = store
        # How far before its close a minute began, on Redis's clock, at the most.
        self._span = interval_seconds + heartbeat_seconds
        # Each held minute with its close mark: the latest lease renewal in Redis when it closed.
        self._held: list[tuple[MinuteSnapshot, float]] = []

    @property
    def held(self) -> int:
        return len(self._held)

    async def settle(self, closed: list[MinuteSnapshot]) -> list[MinuteSnapshot]:
        """The minutes (held before, or ``closed`` now) that may be queued now, flagged where a death
        touched them; the rest stay held. Raises one of ``REDIS_FAILURES`` (keeping them held)."""
        if not self._held and not closed:
            return []
        marks = [mark for _, mark in self._held if mark != float("-inf")]
        view = await self._store.death_view(min(marks) - self._span if marks else None)
        self._held += [(snapshot, view.latest_renewal) for snapshot in closed]
        ready: list[MinuteSnapshot] = []
        held: list[tuple[MinuteSnapshot, float]] = []
        for snapshot, closed_at in self._held:
            # Every member has renewed since the close: none was already dead then, unreaped.
            if view.oldest_renewal <= closed_at:
                held.append((snapshot, closed_at))
                continue
            # A minute closed while no member was listed proves nothing: partial as well.
            died = closed_at == float("-inf") or any(
                renewal <= closed_at and reaped > closed_at - self._span for renewal, reaped in view.deaths
            )
            ready.append(replace(snapshot, partial=True) if died and not snapshot.partial else snapshot)
        self._held = held
        return ready

    def release(self) -> list[MinuteSnapshot]:
        """The minutes still held, ``partial`` (a stop: it must not wait for Redis to prove them)."""
        held, self._held = self._held, []
        return [replace(snapshot, partial=True) for snapshot, _ in held]
