"""A rolling deploy: a gateway stopped with SIGTERM hands every kind of client to another node, and a
rolling restart of three nodes keeps the global count exact and every minute stored.

Two ``python -m socket_gateway`` processes on one real redis-server (one cluster, global counts),
behind a front door that sends each new TCP connection to the first node that accepts it, as a
load balancer does when a node stops listening. Viewers connect through the front door and so all
land on the first node: python-socketio clients and the official socket.io-client under Node, each
on WebSocket and on long-polling. The first node is sent SIGTERM; every client must be disconnected
in a way its library reconnects from ("transport close", not "io server disconnect") and end up on
the second node, and a watcher there must see the room's count drop and come back exactly, never
above the truth. In the rolling restart, three nodes are stopped and replaced one by one (each
replacement on an empty disk: a new outbox file) under steady viewers spread over them. Waiting on
other processes has no event to await: the tests poll, each wait bounded.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import socketio  # type: ignore[import-untyped]

from service_common.timing import SnapshotTiming
from testkit import waiting
from tests.fault_support import ServiceProcess, metrics
from tests.gateway_support import WAIT, Viewer, stored_snapshots
from tests.js_clients import JsClients, node_binary
from tests.redis_support import (
    NODE_WAIT,
    RedisServer,
    cluster_rig,
    latest,
    poll,
    ready,
    redis_server,
    sent_duplicates,
    start_nodes,
)

__all__ = ["redis_server"]

TIMING = SnapshotTiming(2, 1)
LEASE_SECONDS = 1.5
AUCTION = "rolling"
# WebSocket only, long-polling only, and each library's default: polling, then upgraded to WebSocket.
TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrading": ["polling", "websocket"]}
PYTHON_CLIENTS = {"websocket": 2, "polling": 2, "upgrading": 2}
JS_CLIENTS = {"websocket": 2, "polling": 2, "upgrading": 2}
VIEWERS = sum(PYTHON_CLIENTS.values()) + sum(JS_CLIENTS.values())
# What socket.io-client may report when the node it was on stops; "io server disconnect" would
# mean it does not reconnect. python-socketio's client reconnects after "transport error" only
# (engineio.AsyncClient.reason), never after "server disconnect".
RECONNECTING_REASONS = {"transport close", "transport error", "ping timeout"}


class FrontDoor:
    """A load balancer's stand-in: each new connection goes to the first backend that accepts it
    (with ``rotate``, the first from the next backend on, round robin)."""

    def __init__(self, backend_ports: list[int], *, rotate: bool = False) -> None:
        # A test replaces a backend's port when it replaces the node.
        self.backends = backend_ports
        self._rotate = rotate
        self._turn = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        # Python 3.11 waits here for every connection accepted to be closed: bounded, not hoped.
        await asyncio.wait_for(self._server.wait_closed(), WAIT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        first = self._turn % len(self.backends) if self._rotate else 0
        self._turn += 1
        try:
            for port in self.backends[first:] + self.backends[:first]:
                try:
                    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue  # not listening (stopped, or stopping): the next one
                self._writers.add(upstream_writer)
                await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
                return
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


class PythonClient:
    """A python-socketio client that reconnects (quickly, as a test needs) and records what it sees."""

    def __init__(self, transport: str, http: aiohttp.ClientSession) -> None:
        self.transport = transport
        # The test's own HTTP session: python-socketio's client, reconnecting, can drop one of its
        # own unclosed (a ResourceWarning, an error under filterwarnings).
        self.client = socketio.AsyncClient(
            reconnection_delay=0.1, reconnection_delay_max=0.5, http_session=http
        )
        self.connects = 0
        self.disconnect_reasons: list[str] = []
        # The counts this connection was last told (None until told, and again once disconnected).
        self.shown: tuple[int, int] | None = None
        self.client.on("connect", self._on_connect)
        self.client.on("disconnect", self._on_disconnect)
        self.client.on("viewerCountUpdate", self._on_update)

    async def _on_connect(self) -> None:
        self.connects += 1

    async def _on_disconnect(self, reason: str) -> None:
        self.shown = None
        self.disconnect_reasons.append(reason)

    async def _on_update(self, payload: dict[str, int]) -> None:
        self.shown = (payload["viewerCount"], payload["uniqueViewers"])

    async def connect(self, url: str) -> None:
        await self.client.connect(
            url, auth={"auctionId": AUCTION}, transports=TRANSPORTS[self.transport], wait_timeout=WAIT
        )

    async def close(self) -> None:
        if self.client.connected and self.client.transport() == "polling":
            # python-engineio does not end a pending long-poll when its client closes: without
            # abort, python-socketio's polling client waits ~30 s for it.
            await self.client.eio.disconnect(abort=True)
        # shutdown(), not disconnect(): it also ends a reconnection loop, should one still run.
        await self.client.shutdown()


async def test_sigterm_moves_every_client_to_another_node_and_the_counts_follow_exactly(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves that after SIGTERM to the node they are on, python-socketio and socket.io-client
    viewers, on WebSocket and on polling, all reconnect (none told "server disconnect"), all end on
    the other node, the stopped node closed its partial interval and exited 0, and a watcher on the
    other node never saw more viewers than there are, and ends on the exact count."""
    node_binary()
    async with AsyncExitStack() as stack:
        rig = await cluster_rig(stack, tmp_path, redis_server.url, TIMING, LEASE_SECONDS, AUCTION)
        http = rig.http
        envs = [{**rig.env(index), "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE": "100000"} for index in range(2)]
        (stopping, stopping_port), (_, staying_port) = await start_nodes(stack, envs)
        for port in (stopping_port, staying_port):
            await poll(functools.partial(ready, http, port), f"node on {port} ready")
        front = FrontDoor([stopping_port, staying_port])
        await front.start()
        stack.push_async_callback(front.close)
        url = f"http://127.0.0.1:{front.port}"

        watcher = Viewer(f"http://127.0.0.1:{staying_port}")
        await watcher.connect({"auctionId": AUCTION})
        stack.push_async_callback(watcher.disconnect)
        client_http = await stack.enter_async_context(aiohttp.ClientSession())
        clients = [
            PythonClient(transport, client_http)
            for transport, count in PYTHON_CLIENTS.items()
            for _ in range(count)
        ]
        for client in clients:
            stack.push_async_callback(client.close)
        await asyncio.gather(*(client.connect(url) for client in clients))
        js = await JsClients.start(url, AUCTION, JS_CLIENTS)
        stack.push_async_callback(js.close)

        async def all_on(port: int, sockets: int) -> bool:
            return (await metrics(http, port)).get("gateway_room_members") == sockets

        await poll(lambda: all_on(stopping_port, VIEWERS), "every viewer on the first node")

        async def upgraded() -> bool:
            return len(js.upgraded()) == JS_CLIENTS["upgrading"] and all(
                client.client.transport() == "websocket"
                for client in clients
                if client.transport == "upgrading"
            )

        await poll(upgraded, "the upgrading clients on WebSocket")
        await watcher.wait_for(VIEWERS + 1)

        stopping.process.send_signal(signal.SIGTERM)
        assert await stopping.exited() == 0
        await stopping.log_entry("Partial interval closed")

        async def everyone_moved() -> bool:
            js_connects = js.connects()
            return (
                all(client.connects == 2 for client in clients)
                and len(js_connects) == sum(JS_CLIENTS.values())
                and all(count == 2 for count in js_connects.values())
                and await all_on(staying_port, VIEWERS + 1)
            )

        await poll(everyone_moved, "every client reconnected to the other node")
        await watcher.wait_for(VIEWERS + 1)
        # Read now: closing the clients below sends the watcher more updates.
        seen = [update["viewerCount"] for update in watcher.updates]
        final = latest(watcher)

    # The first disconnect of each client is the stop (a later one is the test closing it).
    python_reasons = [client.disconnect_reasons[0] for client in clients]
    assert set(python_reasons) == {"transport error"}, python_reasons
    js_reasons = js.disconnect_reasons()[: sum(JS_CLIENTS.values())]
    assert set(js_reasons) <= RECONNECTING_REASONS, js_reasons
    assert max(seen) == VIEWERS + 1, seen
    assert final == (VIEWERS + 1, VIEWERS + 1)


class Exactness:
    """Watches steady viewers: how long, at most, what they are shown differs from the truth.

    The truth is the number of viewers connected at that moment (each its own viewer); the cluster is
    exact at a moment when every connected viewer shows it. Sampled every 50 ms: the clients are in
    this process, and nothing announces "all of them agree" (a moment, not a change).
    """

    def __init__(self, clients: list[PythonClient]) -> None:
        self._clients = clients
        self.longest_inexact = 0.0
        self.worst: tuple[int, list[tuple[int, int] | None]] | None = None
        self._since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            connected = [client for client in self._clients if client.client.connected]
            truth = (len(connected), len(connected))
            shown = [client.shown for client in connected]
            now = time.monotonic()
            if all(counts == truth for counts in shown):
                self._since = None
            else:
                self._since = self._since or now
                if now - self._since > self.longest_inexact:
                    self.longest_inexact = now - self._since
                    self.worst = (truth[0], shown)
            await asyncio.sleep(0.05)


async def test_a_rolling_restart_of_three_nodes_keeps_the_count_exact_within_2_s_and_loses_no_minute(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves a rolling restart (each of three nodes sent SIGTERM in turn and replaced by a new process
    on an empty disk, its viewers reconnecting to the others through the load balancer) never leaves
    the viewers shown a count other than the truth for 2 s or more, and that every minute from the
    first to the last is stored, once."""
    steady = 9
    async with AsyncExitStack() as stack:
        rig = await cluster_rig(stack, tmp_path, redis_server.url, TIMING, LEASE_SECONDS, AUCTION)
        http = rig.http
        envs = [{**rig.env(index), "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE": "100000"} for index in range(3)]
        nodes = await start_nodes(stack, envs)
        for _, port in nodes:
            await poll(functools.partial(ready, http, port), f"node on {port} ready")
        front = FrontDoor([port for _, port in nodes], rotate=True)
        await front.start()
        stack.push_async_callback(front.close)
        url = f"http://127.0.0.1:{front.port}"
        client_http = await stack.enter_async_context(aiohttp.ClientSession())
        clients = [PythonClient("websocket", client_http) for _ in range(steady)]
        for client in clients:
            stack.push_async_callback(client.close)
        await asyncio.gather(*(client.connect(url) for client in clients))

        async def on_every_node() -> bool:
            members = [(await metrics(http, port)).get("gateway_room_members", 0) for _, port in nodes]
            return sum(members) == steady and all(members)

        await poll(on_every_node, "the viewers spread over the three nodes")
        await waiting.poll(
            lambda: all(client.shown == (steady, steady) for client in clients), "the count", within=NODE_WAIT
        )
        exactness = Exactness(clients)
        exactness.start()
        stack.push_async_callback(exactness.stop)

        processes: list[ServiceProcess] = [process for process, _ in nodes]
        for index in range(3):
            process, _ = nodes[index]
            process.process.send_signal(signal.SIGTERM)
            assert await process.exited() == 0
            # A replacement on a new host: same node id, nothing of the old node's disk.
            env = {**envs[index], "OUTBOX_PATH": str(tmp_path / f"outbox-{index}-replacement.sqlite3")}
            [(replacement, port)] = await start_nodes(stack, [env])
            processes.append(replacement)
            await poll(functools.partial(ready, http, port), f"node {index}'s replacement ready")
            front.backends[index] = port
            nodes[index] = (replacement, port)
            await waiting.poll(
                lambda: all(client.client.connected for client in clients), "reconnected", within=NODE_WAIT
            )
        restarted = time.time()
        interval = TIMING.snapshot_interval_seconds

        def stored_minutes() -> list[int]:
            return [row["minute_start"] for row in stored_snapshots(rig.store_path, AUCTION)]

        # The minute after the last replacement started, closed and stored.
        after = (int(restarted) // interval + 1) * interval
        await waiting.poll(
            lambda: after in stored_minutes(), "the minute after the restart", within=NODE_WAIT
        )
        await exactness.stop()
        # Closed while their nodes still serve them (the exit stack would kill the nodes first and
        # leave the clients reconnecting to nothing while they close), and bounded.
        await asyncio.wait_for(asyncio.gather(*(client.close() for client in clients)), WAIT)

    assert exactness.longest_inexact < 2.0, (exactness.longest_inexact, exactness.worst)
    minutes = stored_minutes()
    assert minutes == list(range(minutes[0], minutes[-1] + interval, interval)), minutes
    assert sent_duplicates(processes) == 0
