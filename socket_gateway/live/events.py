"""The Socket.IO handlers: connect, joinAuction, leaveAuction, disconnect, and anything else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import socketio  # type: ignore[import-untyped]

from service_common.log_limits import RateLimitedLog
from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.protocol import (
    JOIN_EVENT,
    LEAVE_EVENT,
    PayloadError,
    ViewerTokenVerifier,
    auction_id_of,
    connect_request_of,
    count_payload,
    error_ack,
)
from socket_gateway.live.rooms import RoomCounts, RoomRegistry
from socket_gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

# Every line below that a client can cause (a refused connect, a malformed or unknown event, an
# event for a namespace it never joined) is written at most LOG_BURST times per cause in each
# LOG_WINDOW_SECONDS; the next line of that cause says how many were left out, and /metrics counts
# them (gateway_log_lines_suppressed_total{source="events"}). One socket can send events as fast
# as its connection carries them: unlimited, that was 100,000 lines (21.7 MB) in 8 s.
LOG_WINDOW_SECONDS = 10.0
LOG_BURST = 10
# python-socketio's own line for an event on a namespace the socket has not connected to, and
# python-engineio's for a packet to a session that has gone (an acknowledgement of an event whose
# socket closed meanwhile: 5,000 events asking for one, then a close, were 2,000-3,000 lines).
_NOT_CONNECTED_TEMPLATE = "%s is not connected to namespace %s"
_GONE_TEMPLATE = "Cannot send to sid %s"
_NAMESPACE_CHARS = 64


class RoomChanges(Protocol):
    """Who hears that a room's counts may have changed: the local broadcaster, or the cluster node."""

    def room_changed(self, auction_id: str) -> None: ...


SendCountsTo = Callable[[str, str, RoomCounts], Awaitable[None]]
"""Sends one socket (by Socket.IO sid) an auction's counts."""

ForgetCountsSent = Callable[[str], None]
"""Forgets which counts a socket (by Socket.IO sid) was sent last: it left its room."""


def room_name(auction_id: str) -> str:
    """The Socket.IO room of an auction; prefixed so no auction id can name a socket's own room."""
    return f"auction:{auction_id}"


class ViewerEvents:
    """Keeps the registry and the Socket.IO rooms in step with what each socket asks for.

    Every handler catches what it does not expect: one bad event is answered with an error
    acknowledgement (or dropped, when the client asked for none) and logged, and never takes the
    connection or the process down.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        registry: RoomRegistry,
        broadcaster: CountBroadcaster | RoomChanges,
        metrics: GatewayMetrics,
        token_verifier: ViewerTokenVerifier | None,
        send_counts_to: SendCountsTo,
        counts_of: Callable[[str], RoomCounts] | None = None,
        forget_counts_sent: ForgetCountsSent | None = None,
    ) -> None:
        self._sio = sio
        self._registry = registry
        self._broadcaster = broadcaster
        self._metrics = metrics
        self._tokens = token_verifier
        self._send_counts_to = send_counts_to
        self._forget_counts_sent = forget_counts_sent or (lambda sid: None)
        # A joiner is told these counts: the room's (global ones in a cluster).
        self._counts_of = counts_of or registry.counts
        self._viewer_ids: dict[str, str | None] = {}
        self._joiner_sends: set[asyncio.Task[None]] = set()
        self._log = RateLimitedLog(logger, interval_seconds=LOG_WINDOW_SECONDS, burst=LOG_BURST)
        metrics.rate_limited_logs["events"] = self._log

    @property
    def connections(self) -> int:
        return len(self._viewer_ids)

    async def wait_joiners_told(self) -> None:
        """Returns once every joiner's own count update so far has been sent."""
        while self._joiner_sends:
            await asyncio.gather(*self._joiner_sends, return_exceptions=True)

    def register(self) -> None:
        self._sio.on("connect", self.on_connect)
        self._sio.on("disconnect", self.on_disconnect)
        self._sio.on(JOIN_EVENT, self.on_join)
        self._sio.on(LEAVE_EVENT, self.on_leave)
        self._sio.on("*", self.on_unknown)
        # python-socketio logs a warning of its own for every event a socket sends to a namespace
        # it has not connected to (or before it connected at all), and python-engineio one for
        # every acknowledgement whose socket has gone: those go through the same rate-limited log.
        # The libraries (their managers and sockets too) log through these attributes.
        self._sio.logger = _LibraryLog(self._sio.logger, {_NOT_CONNECTED_TEMPLATE: self._not_connected_line})
        self._sio.eio.logger = _LibraryLog(self._sio.eio.logger, {_GONE_TEMPLATE: self._gone_line})

    async def on_connect(
        self, sid: str, environ: Any = None, auth: Any = None, *extra: Any
    ) -> dict[str, Any] | None:
        if sid in self._viewer_ids or extra:
            # python-socketio hands a client's own event named "connect" to this handler too: a
            # connected socket sending it must not connect (or join) a second time.
            return self._malformed("unknown", sid, "reserved event 'connect'")
        try:
            request = connect_request_of(auth)
            viewer_id = self._tokens.viewer_id(request.token) if self._tokens else request.viewer_id
        except PayloadError as error:
            reason = "token" if self._tokens and "token" in str(error) else "malformed_auth"
            self._metrics.connections_refused[reason] += 1
            self._log.info(f"connection_refused_{reason}", "Connection refused", extra={"reason": str(error)})
            raise socketio.exceptions.ConnectionRefusedError(str(error)) from None
        self._viewer_ids[sid] = viewer_id
        self._metrics.connections_total += 1
        if request.auction_id is not None:
            try:
                await self._join(sid, request.auction_id)
            except Exception:
                self._log.exception("handler_failed_connect", "Joining on connect failed", extra={"sid": sid})
                self._forget(sid)
                self._metrics.connections_refused["internal_error"] += 1
                raise socketio.exceptions.ConnectionRefusedError("internal error") from None

        return None

    async def on_disconnect(self, sid: str, *args: Any) -> dict[str, Any] | None:
        if self._sio.manager.is_connected(sid, "/"):
            # A client's own event named "disconnect" also lands here, while its socket stays
            # connected (a real disconnect is marked pending before this handler runs): forgetting
            # the socket would take it out of its room's count while it still watches.
            return self._malformed("unknown", sid, "reserved event 'disconnect'")
        self._forget(sid)
        return None

    def _forget(self, sid: str) -> None:
        self._viewer_ids.pop(sid, None)
        left = self._registry.leave(sid)
        self._forget_counts_sent(sid)
        if left is not None:
            self._broadcaster.room_changed(left)

    async def on_join(self, sid: str, *args: Any) -> dict[str, Any]:
        try:
            auction_id = auction_id_of(args[0] if args else None)
        except PayloadError as error:
            return self._malformed(JOIN_EVENT, sid, str(error))
        try:
            return await self._join(sid, auction_id)
        except Exception:
            self._log.exception("handler_failed_join", "joinAuction failed", extra={"sid": sid})
            return error_ack("internal error")

    async def on_leave(self, sid: str, *args: Any) -> dict[str, Any]:
        if args and isinstance(args[0], str):
            # The seed's ``socket.emit("leaveAuction", auctionId)``: leaves that room only. A socket
            # that has already switched to another room stays there (join-then-leave-old is safe).
            try:
                named = auction_id_of(args[0])
            except PayloadError as error:
                return self._malformed(LEAVE_EVENT, sid, str(error))
            if self._registry.room_of(sid) != named:
                return {"ok": True, "auctionId": None}
        try:
            left = self._registry.leave(sid)
            if left is not None:
                await self._sio.leave_room(sid, room_name(left))
                # Out of the room, it hears nothing more; back in one, it must be told the counts.
                self._forget_counts_sent(sid)
                self._broadcaster.room_changed(left)
            return {"ok": True, "auctionId": left}
        except Exception:
            self._log.exception("handler_failed_leave", "leaveAuction failed", extra={"sid": sid})
            return error_ack("internal error")

    async def on_unknown(self, *args: Any) -> dict[str, Any]:
        # python-socketio calls its catch-all as (event, sid, *data), the event not necessarily a string;
        # but an event literally named "*" is the catch-all's own key, and reaches it as (sid, *data),
        # without the name (``BaseServer._get_event_handler``). Told apart by the sid in second place.
        sid: str | None
        if len(args) >= 2 and isinstance(args[1], str) and args[1] in self._viewer_ids:
            event, sid = args[0], args[1]
        else:
            event, sid = "*", (args[0] if args else None)
        return self._malformed("unknown", sid, f"unknown event {str(event)[:64]!r}")

    async def _join(self, sid: str, auction_id: str) -> dict[str, Any]:
        if sid not in self._viewer_ids:
            # The socket disconnected while this event waited to run; joining now would leak it.
            return error_ack("not connected")
        left, changed = self._registry.join(sid, auction_id, self._viewer_ids[sid])
        if not changed:
            # Already in this room and told its counts: nothing changed, nobody is told anything.
            return {"ok": True, **count_payload(auction_id, self._counts_of(auction_id))}
        if left is not None:
            await self._sio.leave_room(sid, room_name(left))
            self._broadcaster.room_changed(left)
        await self._sio.enter_room(sid, room_name(auction_id))
        self._broadcaster.room_changed(auction_id)
        # The joiner hears the count at once, not at the room's next coalesced update, from a task
        # that runs after this handler returns: from the connect handler, the socket's CONNECT
        # packet must go out before any event reaches it. The room's update that this join sets
        # off reaches the joiner too; of the two, the one that carries the counts the joiner was
        # just sent is not sent to it (RoomFanout never sends a socket the update it sent it last).
        task = asyncio.create_task(self._tell_joiner(sid, auction_id))
        self._joiner_sends.add(task)
        task.add_done_callback(self._joiner_sends.discard)
        return {"ok": True, **count_payload(auction_id, self._counts_of(auction_id))}

    async def _tell_joiner(self, sid: str, auction_id: str) -> None:
        if self._registry.room_of(sid) != auction_id:
            return  # it left or moved on before this ran
        # Read now, not at the join: a room update sent since then must not be followed by
        # older counts, or the joiner would end on a stale value.
        try:
            await self._send_counts_to(sid, auction_id, self._counts_of(auction_id))
        except Exception:
            self._log.exception(
                "handler_failed_tell_joiner", "Telling a joiner the counts failed", extra={"sid": sid}
            )

    def _not_connected_line(self, args: tuple[object, ...]) -> None:
        # An event for a namespace the socket has not connected to: python-socketio drops it.
        sid, namespace = args
        self._malformed(
            "not_connected",
            None if sid is None else str(sid),
            f"event for namespace {str(namespace)[:_NAMESPACE_CHARS]!r}, not connected to it",
        )

    def _gone_line(self, args: tuple[object, ...]) -> None:
        (eio_sid,) = args
        self._metrics.packets_for_gone_sessions_total += 1
        self._log.warning(
            "packet_for_gone_socket",
            "Packet for a session that has gone; dropped",
            extra={"connection": str(eio_sid)},
        )

    def _malformed(self, event: str, sid: str | None, problem: str) -> dict[str, Any]:
        self._metrics.malformed_events[event] += 1
        self._log.info(
            f"malformed_event_{event}",
            "Malformed event refused",
            extra={"event": event, "sid": sid, "problem": problem},
        )
        return error_ack(problem)


class _LibraryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A library's logger, with the lines a client can make it write handed to ``routes`` instead.

    Args:
        library_logger: the library's own logger.
        routes: message template → what to do with that line's arguments (rate-limited there).
    """

    def __init__(
        self,
        library_logger: logging.Logger | logging.LoggerAdapter[Any],
        routes: dict[str, Callable[[tuple[object, ...]], None]],
    ) -> None:
        super().__init__(library_logger, {})
        self._routes = routes

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        route = self._routes.get(msg) if isinstance(msg, str) else None
        if route is None:
            super().log(level, msg, *args, **kwargs)
            return
        try:
            route(args)
        except ValueError:  # not the arguments the template takes: log it as the library meant
            super().log(level, msg, *args, **kwargs)
