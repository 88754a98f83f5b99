"""A long-polling client that leaves has its pending poll answered at once, not held 45 s."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from socket_gateway.transport import library_internals as internals
from tests.gateway_support import WAIT, gateway_config, running_gateway, wait_until

POLLING = "/socket.io/?EIO=4&transport=polling"
# Far below the default ping interval + timeout (45 s) that held the poll before.
ANSWERED_WITHIN_SECONDS = 5.0


async def test_a_clients_close_answers_its_pending_long_poll_at_once(tmp_path: Path) -> None:
    """Proves that when a polling client sends Engine.IO's CLOSE (as socket.io-client does on
    disconnect()), the GET it left waiting is answered at once, and the room's count drops: the
    gateway held that request open until the ping timeout (45 s), a connection per departed viewer
    (the official client's process could not exit for those 45 s; Node's socket.io answers it)."""
    async with running_gateway(gateway_config(tmp_path)) as gateway, aiohttp.ClientSession() as http:
        async with http.get(gateway.url + POLLING) as opening:
            sid = json.loads((await opening.text())[1:])["sid"]
        session = f"{gateway.url}{POLLING}&sid={sid}"
        async with http.post(session, data='40{"auctionId":"leaving"}') as connected:
            assert connected.status == 200
        async with http.get(session) as connect_answer:
            assert (await connect_answer.text()).startswith("40")
        await wait_until(lambda: gateway.gateway.registry.counts("leaving").viewer_count == 1, "the join")

        async def pending_poll() -> tuple[int, str]:
            async with http.get(session) as poll:
                return poll.status, await poll.text()

        poll = asyncio.create_task(pending_poll())
        socket = internals.sockets_of(gateway.gateway.sio.eio)[sid]
        # The GET is waiting on the server once the session's queue has a waiting reader.
        await wait_until(lambda: internals.writer_idle(socket), "the long-poll waiting on the server")
        assert not poll.done()
        async with http.post(session, data="1") as closed:
            assert closed.status == 200
        status, _ = await asyncio.wait_for(poll, ANSWERED_WITHIN_SECONDS)
        assert status == 200
        await wait_until(lambda: gateway.gateway.registry.counts("leaving").viewer_count == 0, "the leave")
        assert WAIT > ANSWERED_WITHIN_SECONDS
