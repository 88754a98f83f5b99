"""python-socketio's room manager, with an index from each socket to its rooms and direct room emits.

To find a disconnecting socket's rooms, python-socketio copies and scans every room of the
namespace, and every socket has a room of its own: a disconnect costs O(connected sockets).
Measured here (bench/socketio_rooms.py): 0.18 ms per disconnect with 1,000 sockets connected,
5.4 ms with 20,000 — at 20,000 viewers, 100 leaving a second would take half a core. The manager
below keeps sid → rooms beside python-socketio's own tables, so a disconnect touches only the rooms
that socket is in. The tables python-socketio reads stay exactly as it keeps them
(tests/unit/test_gateway_room_index.py compares both under random operations).

A room emit, in python-socketio, starts one asyncio task per recipient. The manager here hands a
room emit's packet, encoded once, to ``deliver`` instead (the gateway's RoomFanout, which writes it
straight into each WebSocket where that is safe). With Redis, room emits stay on their node as
well: the cluster's relay (``cluster/relay.py``) carries count updates between the nodes. Emits
that ask for acknowledgements, or carry binary attachments, keep python-socketio's own path.

Both are python-socketio internals (the room tables, ``basic_disconnect``), so the two mixins live
in ``transport/library_internals.py``; here they are composed.
"""

from __future__ import annotations

from socket_gateway.transport import library_internals as internals


class IndexedManager(internals.RoomIndexManager, internals.DirectEmitManager):
    """The gateway's manager, with or without REDIS_URL."""
