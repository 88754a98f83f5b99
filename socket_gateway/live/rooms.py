"""Who watches which auction: exact per-room connection and distinct-viewer counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, ItemsView
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RoomCounts:
    """A room's two counts: ``viewer_count`` connections and ``unique_viewers`` distinct viewers."""

    viewer_count: int
    unique_viewers: int


EMPTY = RoomCounts(0, 0)


@dataclass(slots=True)
class _Room:
    connections: int = 0
    # How many connections each viewer id holds; anonymous sockets are counted apart.
    viewers: Counter[str] = field(default_factory=Counter)
    anonymous: int = 0

    def counts(self) -> RoomCounts:
        return RoomCounts(self.connections, len(self.viewers) + self.anonymous)


@dataclass(frozen=True, slots=True)
class Membership:
    auction_id: str
    viewer_id: str | None


JoinListener = Callable[[str, str, str | None], None]
"""Told of every join as it happens: the socket's sid, the auction, its viewer id (None: anonymous)."""


class RoomRegistry:
    """Every socket's room and viewer id, and each room's counts, kept exact.

    All methods are synchronous: on one event loop each call is atomic, so concurrent joins,
    switches and disconnects can never interleave halfway and leave a count off by one.
    A room disappears as soon as its last socket leaves, so the registry holds only live rooms.
    """

    def __init__(self) -> None:
        self._members: dict[str, Membership] = {}
        self._rooms: dict[str, _Room] = {}
        self._join_listeners: list[JoinListener] = []

    def on_join(self, listener: JoinListener) -> None:
        """Tells ``listener`` of every join from now on, after the counts took it in (never a no-op join)."""
        self._join_listeners.append(listener)

    def join(self, sid: str, auction_id: str, viewer_id: str | None) -> tuple[str | None, bool]:
        """Puts ``sid`` in ``auction_id``'s room, leaving the room it was in.

        Returns:
            The room it left (None if none) and whether anything changed: joining the room it is
            already in is a no-op.
        """
        current = self._members.get(sid)
        if current is not None and current.auction_id == auction_id:
            return None, False
        left = self.leave(sid)
        self._members[sid] = Membership(auction_id, viewer_id)
        room = self._rooms.get(auction_id)
        if room is None:
            room = self._rooms[auction_id] = _Room()
        room.connections += 1
        if viewer_id is None:
            room.anonymous += 1
        else:
            room.viewers[viewer_id] += 1
        for listener in self._join_listeners:
            listener(sid, auction_id, viewer_id)
        return left, True

    def leave(self, sid: str) -> str | None:
        """Takes ``sid`` out of its room; returns that room's auction id, or None if it was in none."""
        membership = self._members.pop(sid, None)
        if membership is None:
            return None
        room = self._rooms[membership.auction_id]
        room.connections -= 1
        if membership.viewer_id is None:
            room.anonymous -= 1
        else:
            room.viewers[membership.viewer_id] -= 1
            if room.viewers[membership.viewer_id] == 0:
                del room.viewers[membership.viewer_id]
        if room.connections == 0:
            del self._rooms[membership.auction_id]
        return membership.auction_id

    def room_of(self, sid: str) -> str | None:
        """The auction whose room ``sid`` is in, or None."""
        membership = self._members.get(sid)
        return membership.auction_id if membership else None

    def counts(self, auction_id: str) -> RoomCounts:
        """The room's counts; an auction nobody watches has zero of both."""
        room = self._rooms.get(auction_id)
        return room.counts() if room else EMPTY

    def contribution(self, auction_id: str) -> tuple[int, int, set[str]]:
        """The room's connections, anonymous connections and distinct viewer ids (what a node shares)."""
        room = self._rooms.get(auction_id)
        if room is None:
            return 0, 0, set()
        return room.connections, room.anonymous, set(room.viewers)

    def members(self) -> ItemsView[str, Membership]:
        """Every socket in a room, by sid, with its room and viewer id (a live view: read it at once)."""
        return self._members.items()

    def active_rooms(self) -> list[str]:
        return list(self._rooms)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    @property
    def member_count(self) -> int:
        return len(self._members)
