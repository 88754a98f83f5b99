"""Long-polling requests answered on the gateway's own listener (transport/polling.py), over raw sockets.

The official client and browsers reuse a connection for several polling requests; these tests make
the HTTP a browser can make on one connection (requests one after another, pipelined, a body split
across segments, ``Connection: close``) and check each is answered in order and counted, and that a
connection kept between requests is closed by the idle timeout and at shutdown.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from service_common.connection_guard import ConnectionLimits
from socket_gateway.transport import library_internals as internals
from tests.gateway_support import ALLOWED_ORIGIN, WAIT, gateway_config, running_gateway, wait_until
from tests.integration.test_gateway_websocket_transport import RawClient, upgrade_request

POLLING = "/socket.io/?EIO=4&transport=polling"


def get(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: gw.test", f"Origin: {ALLOWED_ORIGIN}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(target: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: gw.test", "Content-Type: text/plain;charset=UTF-8", *headers]
    return ("\r\n".join([*lines, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body


async def response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP response: its status line, its headers (lower-case names) and its body."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).decode("latin-1")
    status, *lines = head[:-4].split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT)
    return status, headers, body


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Opens a polling session on this connection; its requests' target (with the sid)."""
    writer.write(get(POLLING))
    status, headers, body = await response(reader)
    assert status == "HTTP/1.1 200 OK"
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert body.startswith(b"0")
    return f"{POLLING}&sid={json.loads(body[1:])['sid']}"


async def test_polling_requests_on_one_connection_are_answered_in_order_and_the_viewer_counted(
    tmp_path: Path,
) -> None:
    """Proves that the requests of a polling session made on one kept connection — a handshake, the
    CONNECT, a pipelined GET and POST, a request asking to close — are each answered, in order, with
    CORS as before, and that the viewer is counted and then leaves; and that a request whose body
    comes in a later segment than its head, after requests answered on the same connection, is
    answered too."""
    async with running_gateway(gateway_config(tmp_path)) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        session = await handshake(reader, writer)
        writer.write(post(session, b'40{"auctionId":"kept"}'))
        status, _, answer = await response(reader)
        assert (status, answer) == ("HTTP/1.1 200 OK", b"OK")
        await wait_until(lambda: running.gateway.registry.counts("kept").viewer_count == 1, "the join")

        # Pipelined: the GET takes the CONNECT answer; the POST's answer comes after it.
        writer.write(get(session) + post(session, b'42["leaveAuction"]'))
        status, _, polled = await response(reader)
        assert status == "HTTP/1.1 200 OK"
        assert polled.startswith(b"40")
        status, _, posted = await response(reader)
        assert (status, posted) == ("HTTP/1.1 200 OK", b"OK")
        await wait_until(lambda: running.gateway.registry.counts("kept").viewer_count == 0, "the leave")

        writer.write(post(session, b"1", "Connection: close"))  # Engine.IO's CLOSE, then no more requests
        status, headers, posted = await response(reader)
        assert (status, posted) == ("HTTP/1.1 200 OK", b"OK")
        assert headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        session = await handshake(reader, writer)
        connect = post(session, b'40{"auctionId":"split"}')
        writer.write(connect[:-5])
        await writer.drain()
        await asyncio.sleep(0.05)  # the head, then the rest of the body in a later segment
        writer.write(connect[-5:])
        status, _, answer = await response(reader)
        assert (status, answer) == ("HTTP/1.1 200 OK", b"OK")
        await wait_until(lambda: running.gateway.registry.counts("split").viewer_count == 1, "the join")
        writer.close()


async def test_a_connection_kept_between_polling_requests_is_closed_when_idle_and_at_shutdown(
    tmp_path: Path,
) -> None:
    """Proves that a connection kept after a polling answer does not stay open for ever: it is closed
    after the idle timeout (here 1 s) with nothing sent, and one still idle when the gateway stops is
    closed at once by the stop."""
    config = gateway_config(tmp_path, connections=ConnectionLimits(idle_timeout_seconds=1.0))
    async with running_gateway(config) as running:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", running.port)
        idle_writer.write(get(POLLING))
        await response(idle_reader)
        loop = asyncio.get_running_loop()
        answered = loop.time()
        assert await asyncio.wait_for(idle_reader.read(), WAIT) == b""
        assert loop.time() - answered >= 0.9
        idle_writer.close()

        kept_reader, kept_writer = await asyncio.open_connection("127.0.0.1", running.port)
        kept_writer.write(get(POLLING))
        await response(kept_reader)
        await running.stop()
        assert await asyncio.wait_for(kept_reader.read(), 0.9) == b""
        kept_writer.close()


async def test_a_polling_session_upgraded_on_the_listener_hears_counts_directly_and_is_dropped_unread(
    tmp_path: Path,
) -> None:
    """Proves a long-polling session's upgrade served on the listener's connection: the probe and the
    UPGRADE as python-engineio answers them, count updates then written straight into the WebSocket,
    and, as on every WebSocket, a peer that stops reading dropped once more than the cap (here 256 KiB)
    waits for it, counted, leaving its room."""
    config = gateway_config(tmp_path, max_queued_bytes_per_session=256 * 1024)
    async with running_gateway(config) as running:
        gateway = running.gateway
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        session = await handshake(reader, writer)
        sid = session.rpartition("sid=")[2]
        writer.write(post(session, b'40{"auctionId":"up"}'))
        await response(reader)
        writer.write(get(session))
        assert (await response(reader))[2].startswith(b"40")

        upgrade = upgrade_request(running.port, path=f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
        upgraded, head = await RawClient.connect(running.port, upgrade)
        assert head.startswith(b"HTTP/1.1 101 ")
        upgraded.send_text("2probe")
        assert await upgraded.text() == "3probe"
        upgraded.send_text("5")
        socket = internals.sockets_of(gateway.sio.eio)[sid]
        await wait_until(lambda: internals.is_plain_websocket(socket), "the upgrade")
        direct_before = gateway.metrics.count_messages_direct_total

        neighbour, _ = await RawClient.open_session(running.port, {"auctionId": "up"})
        heard = json.loads((await upgraded.text_starting('42["viewerCountUpdate"'))[2:])[1]
        assert heard["viewerCount"] == 2
        await wait_until(lambda: gateway.metrics.count_messages_direct_total >= direct_before + 2, "direct")

        upgraded.writer.transport.pause_reading()  # type: ignore[attr-defined]
        sio = gateway.sio
        socketio_sid = internals.namespace_sid(sio, sid)
        filler = "x" * 8_000
        for sequence in range(20_000):
            if sid not in sio.eio.sockets:
                break
            await sio.emit("probe", [sequence, filler], to=socketio_sid)
            await asyncio.sleep(0)
        assert sid not in sio.eio.sockets, "the deaf peer was never dropped"
        await wait_until(lambda: gateway.registry.counts("up").viewer_count == 1, "seat kept")
        assert gateway.metrics.sessions_dropped_unread["websocket"] == 1
        upgraded.writer.transport.resume_reading()  # type: ignore[attr-defined]
        await upgraded.closed_by_server()
        neighbour.close()
        writer.close()
