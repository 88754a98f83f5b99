"""Where every count update leaves the process: a room's update, a relayed one, and a joiner's own."""

from __future__ import annotations

from socket_gateway.live.events import room_name
from socket_gateway.live.fanout import RoomFanout
from socket_gateway.live.feed import CountFeed
from socket_gateway.live.protocol import COUNT_EVENT, count_payload
from socket_gateway.live.rooms import RoomCounts
from socket_gateway.metrics import GatewayMetrics
from socket_gateway.transport import library_internals as internals


class CountDelivery:
    """Sends ``viewerCountUpdate`` to a room or to one socket, and counts what was sent.

    A room's update is emitted through python-socketio's manager (with ``REDIS_URL``,
    ``cluster/relay.py`` carries it to the other nodes with sockets in the room, which emit it there
    by :meth:`emit_relayed`); the managers hand the encoded packet back to
    :meth:`deliver` (``room_index.py``), which writes it through :class:`RoomFanout` once for all the
    node's recipients instead of one task per recipient. A joiner's own count takes the same last step.

    Counts also leave the process for listeners other than the room's sockets (the internal gRPC
    stream, alert evaluation): they register a :class:`~socket_gateway.live.feed.CountListener` with
    ``feed``, which is told every change of an auction's counts, zero included (live/feed.py says
    where the feed's counts come from, alone and with Redis).
    """

    def __init__(
        self,
        sio: internals.SocketIOServer,
        fanout: RoomFanout,
        metrics: GatewayMetrics,
        feed: CountFeed | None = None,
    ) -> None:
        self._sio = sio
        self._fanout = fanout
        self._metrics = metrics
        self.feed = feed or CountFeed()
        sio.manager.deliver_with(self.deliver)

    async def emit_to_room(self, auction_id: str, counts: RoomCounts) -> None:
        """The room's coalesced update, to every socket in it on this node."""
        self._metrics.count_broadcasts_total += 1
        await self._sio.emit(COUNT_EVENT, count_payload(auction_id, counts), room=room_name(auction_id))

    async def emit_relayed(self, auction_id: str, counts: RoomCounts) -> None:
        """Another node's update of a room, to every socket in it on this node."""
        await self._sio.emit(COUNT_EVENT, count_payload(auction_id, counts), room=room_name(auction_id))

    async def send_to(self, sid: str, auction_id: str, counts: RoomCounts) -> None:
        """One socket's own update (a joiner's counts), unless it has gone meanwhile."""
        eio_sid = internals.engineio_sid(self._sio, sid)
        if eio_sid is None:
            return
        await self.deliver([eio_sid], self._packet(auction_id, counts))

    def forget_sent(self, sid: str) -> None:
        """Forgets the last update sent to ``sid``, so a socket that joins again is told its counts."""
        eio_sid = internals.engineio_sid(self._sio, sid)
        if eio_sid is not None:
            self._fanout.forget(eio_sid)

    async def deliver(self, eio_sids: list[str], pkt: internals.EngineIOPacket) -> None:
        """The last step of every count update: written to this node's recipients, and counted."""
        tally = await self._fanout.send(eio_sids, pkt)
        self._metrics.count_messages_total += tally.direct + tally.queued
        self._metrics.count_messages_direct_total += tally.direct

    def _packet(self, auction_id: str, counts: RoomCounts) -> internals.EngineIOPacket:
        return internals.event_packet(self._sio, "/", [COUNT_EVENT, count_payload(auction_id, counts)])
