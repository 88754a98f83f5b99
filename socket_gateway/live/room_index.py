"""python-socketio's room managers, with an index from each socket to its rooms and direct room emits.

To find a disconnecting socket's rooms, python-socketio copies and scans every room of the
namespace, and every socket has a room of its own: a disconnect costs O(connected sockets).
Measured here (bench/socketio_rooms.py): 0.18 ms per disconnect with 1,000 sockets connected,
5.4 ms with 20,000 — at 20,000 viewers, 100 leaving a second would take half a core. The managers
below keep sid → rooms beside python-socketio's own tables, so a disconnect touches only the rooms
that socket is in. The tables python-socketio reads stay exactly as it keeps them
(tests/unit/test_gateway_room_index.py compares both under random operations).

A room emit, in python-socketio, starts one asyncio task per recipient. The managers here hand a
room emit's packet, encoded once, to ``deliver`` instead (the gateway's RoomFanout, which writes it
straight into each WebSocket where that is safe). With Redis, that is where each node delivers
what the other nodes published. Emits that ask for acknowledgements, or carry binary attachments,
keep python-socketio's own path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import socketio  # type: ignore[import-untyped]
from engineio import packet as eio_packet  # type: ignore[import-untyped]
from socketio import packet as sio_packet

RoomKey = tuple[str, str]  # (namespace, sid)


class _RoomIndex:
    """Mixed into a python-socketio manager: keeps ``(namespace, sid) → rooms`` in step with it."""

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rooms_of: dict[RoomKey, set[str | None]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: str | None, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio's own version, with the scan of every room replaced by the index.
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[str]:
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]

    @property
    def indexed_sockets(self) -> int:
        """Sockets with at least one room (for tests: the index must not outlive its sockets)."""
        return len(self._rooms_of)


Deliver = Callable[[list[str], Any], Awaitable[None]]


class _DirectEmit(socketio.AsyncManager):  # type: ignore[misc]
    """A room emit's packet handed to ``deliver`` once, instead of one task per recipient."""

    deliver: Deliver | None = None

    def deliver_with(self, deliver: Deliver) -> None:
        """Where room emits go from now on: ``deliver(eio_sids, engineio_packet)``."""
        self.deliver = deliver

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        deliver = self.deliver
        # kwargs: python-socketio's own flags (ignore_queue), which mean nothing to a local delivery.
        if deliver is None or callback is not None:
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
            )
            return
        room = to or room
        if namespace not in self.rooms:
            return
        # The argument rules of python-socketio's AsyncManager.emit.
        if isinstance(data, tuple):
            arguments = list(data)
        elif data is not None:
            arguments = [data]
        else:
            arguments = []
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *arguments])
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: several Engine.IO packets
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, to=to)
            return
        skipped = set(skip_sid if isinstance(skip_sid, list) else [skip_sid])
        # A socket whose connect handler is still running has no CONNECT packet out yet: it must
        # not hear an event first (the gateway tells a joiner its counts once it is connected).
        skipped.update(self.pending_connect.get(namespace, ()))
        participants = self.get_participants(namespace, room)
        recipients = [eio_sid for sid, eio_sid in participants if sid not in skipped]
        if recipients:
            await deliver(recipients, eio_packet.Packet(eio_packet.MESSAGE, encoded))


class IndexedManager(_RoomIndex, _DirectEmit):
    """The single-process manager (no REDIS_URL)."""


# _DirectEmit after the Redis manager: python-socketio's pub/sub manager delivers what it hears
# through ``super().emit``, which then reaches _DirectEmit before AsyncManager.
class IndexedRedisManager(_RoomIndex, socketio.AsyncRedisManager, _DirectEmit):  # type: ignore[misc]
    """The Redis manager (REDIS_URL): room emits relayed to every node."""

    @property
    def listening(self) -> bool:
        """Whether other nodes' emits reach this node: subscribed, on a live connection.

        After Redis comes back, python-socketio re-subscribes on its own backoff (up to 60 s), so
        a node can hold its counts in Redis again and still miss the other nodes' updates.
        """
        pubsub = self.pubsub
        if pubsub is None or not pubsub.subscribed:
            return False
        connection = pubsub.connection
        return connection is not None and bool(connection.is_connected)
