"""The sampler's cluster strategy: the sampler lease holder samples the global counts, fenced."""

from __future__ import annotations

from socket_gateway.cluster.sampler_lease import SamplerLease
from socket_gateway.live.rooms import EMPTY, RoomCounts
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SnapshotAggregator


class ClusterSampling:
    """Samples every room's global counts while this node holds the sampler lease; nothing otherwise.

    Its closed snapshots reach the outbox only after the lease's fencing token is checked: one
    snapshot per auction-minute across the cluster (``SamplerLease``).
    """

    def __init__(self, lease: SamplerLease) -> None:
        self._lease = lease
        self._last_view: dict[str, RoomCounts] | None = None

    async def sample(self, tick: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        view = await self._lease.sample_view()
        self._last_view = view
        if view is None:
            # Not the leader (or Redis is down): another node samples, or nobody can prove it may.
            aggregator.discard()
            return []
        closed = aggregator.sample(tick, view, lambda auction_id: view.get(auction_id, EMPTY))
        return await self._lease.fence(closed)

    def finish(self, now: float, aggregator: SnapshotAggregator) -> list[MinuteSnapshot]:
        if self._last_view is None:
            return []
        # The leader closes the interval itself, from its last global sample (finishing must not wait
        # for Redis), whether other nodes live on or not: the cluster records it as the lease is given
        # up, so the next leader does not send it again.
        view = self._last_view
        return self._lease.hand_over(
            aggregator.finish(now, view, lambda auction_id: view.get(auction_id, EMPTY))
        )
