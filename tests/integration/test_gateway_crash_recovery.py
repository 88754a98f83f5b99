"""Gateway nodes on a real redis-server through a node's death: stored minutes never above the truth.

Three real ``python -m socket_gateway`` processes, real python-socketio clients and the real ingest
service on SQLite. A node is SIGKILLed and its viewers reconnect to the survivors at once, as
browsers do through the load balancer: until the survivors reap the dead node (up to a lease and a
heartbeat later) its viewers are in Redis twice. Every minute that overlaps that window, from the
dead node's last renewal on, must be stored ``partial``, never as the truth. Waiting on other
processes has no event to await: the test polls, each wait bounded.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from service_common.timing import SnapshotTiming
from socket_gateway.cluster.node import redis_client
from socket_gateway.cluster.store import room_key
from tests.fault_support import metrics
from tests.gateway_support import Viewer, stored_snapshots
from tests.redis_support import (
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

# A 2 s "minute" sampled every second, a 1.5 s lease (renewed every 0.5 s): a killed node is reaped
# 1-2 s after its death, so its double-counted window always spans a minute's close (below).
TIMING = SnapshotTiming(2, 1)
LEASE_SECONDS = 1.5
AUCTION = "crash"
PER_NODE = 4


async def test_a_dead_nodes_double_count_is_stored_partial_and_a_redis_outage_loses_no_minute(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Proves that when a node is SIGKILLed half a second before a minute closes and its viewers
    reconnect to the survivors at once (counted twice until the reap, which comes after the close),
    no stored minute shows more viewers than there are without being ``partial``, the minute of the
    death is ``partial`` (its close came before the reap: before, it was stored as the truth), and
    no minute is missing or sent twice. Then that Redis down for a whole minute and more (restarted
    empty) loses no minute either: the minute Redis was down for is stored, ``partial``, with every
    connection of both survivors (each sampled its own; before, the minute was missing)."""
    interval = TIMING.snapshot_interval_seconds
    async with AsyncExitStack() as stack:
        rig = await cluster_rig(stack, tmp_path, redis_server.url, TIMING, LEASE_SECONDS, AUCTION)
        http = rig.http
        nodes = await start_nodes(stack, [rig.env(index) for index in range(3)])
        ports = [port for _, port in nodes]
        for port in ports:
            await poll(functools.partial(ready, http, port), f"node on {port} ready")
        viewers: dict[int, list[Viewer]] = {index: [] for index in range(3)}

        async def join(index: int) -> None:
            viewer = Viewer(f"http://127.0.0.1:{ports[index]}")
            await viewer.connect({"auctionId": AUCTION})
            stack.push_async_callback(viewer.disconnect)
            viewers[index].append(viewer)

        await asyncio.gather(*(join(index) for index in range(3) for _ in range(PER_NODE)))
        truth = (3 * PER_NODE, 3 * PER_NODE)

        async def survivors_see(counts: tuple[int, int], among: list[int]) -> bool:
            return all(latest(viewer) == counts for index in among for viewer in viewers[index])

        await poll(functools.partial(survivors_see, truth, [0, 1, 2]), "every viewer to see the count")
        # The victim is not the room's sampling owner: the owner lives on and closes the minute in
        # which the victim's viewers are counted twice (an owner's death is another test's).
        admin = redis_client(redis_server.url, 1.0, 3)
        stack.push_async_callback(admin.aclose)
        owner = await admin.get(f"{room_key(AUCTION)}:o")
        assert isinstance(owner, bytes), owner
        owner_index = int(owner.decode().partition("@")[0].removeprefix("node-"))
        victim = next(index for index in range(3) if index != owner_index)
        survivors = [index for index in range(3) if index != victim]

        # Half a second before a minute closes: a position on the wall clock, reached only by waiting.
        boundary = (int(time.time() + 0.6) // interval + 1) * interval
        await asyncio.sleep(boundary - 0.5 - time.time())
        process, _ = nodes[victim]
        process.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        gone, viewers[victim] = viewers[victim], []
        await asyncio.gather(*(join(survivors[n % 2]) for n in range(len(gone))))
        assert await process.exited() == -signal.SIGKILL
        for viewer in gone:
            await viewer.disconnect()
        await poll(functools.partial(survivors_see, truth, survivors), "the survivors' exact count again")
        reaped_at = time.time()

        def minutes() -> dict[int, dict[str, int]]:
            return {row["minute_start"]: row for row in stored_snapshots(rig.store_path, AUCTION)}

        # The minute the reap fell in, closed and stored: every minute the death touched.
        reap_minute = int(reaped_at) // interval * interval
        await poll(lambda: _holds(reap_minute in minutes()), "the minute of the reap stored")
        stored = minutes()
        assert sent_duplicates(process for process, _ in nodes) == 0

        # Then Redis down for a whole minute and more (restarted empty), the survivors serving their
        # own sockets meanwhile: the outage's minutes are stored too, from both nodes' samples.
        redis_server.stop()
        down_at = time.time()
        for index in survivors:
            await poll(functools.partial(_redis_ready, http, ports[index], 0), f"node {index} degraded")
        down_minute = (int(down_at) // interval + 1) * interval
        # A span of the wall clock with Redis down: reached only by waiting for it.
        await asyncio.sleep(down_minute + interval + 0.2 - time.time())
        redis_server.start()
        up_at = time.time()
        for index in survivors:
            await poll(functools.partial(ready, http, ports[index]), f"node {index} back")
        after_minute = (int(up_at) // interval + 1) * interval
        await poll(lambda: _holds(after_minute in minutes()), "the minute after Redis's return stored")
        final = minutes()
        assert sent_duplicates(process for process, _ in nodes) == 0

    death_minute = int(killed_at) // interval * interval
    assert stored[death_minute]["partial"] == 1, stored[death_minute]
    inflated = [
        row
        for row in stored.values()
        if not row["partial"] and max(row["peak_viewers"], row["viewer_count"]) > truth[0]
    ]
    assert not inflated, f"minutes stored as the truth with more viewers than there were: {inflated}"
    starts = sorted(stored)
    assert starts == list(range(starts[0], starts[-1] + interval, interval)), starts

    starts = sorted(final)
    assert starts == list(range(starts[0], starts[-1] + interval, interval)), starts
    outage = final[down_minute]
    # Sampled by each survivor from its own sockets and merged: every connection counted, flagged.
    assert (outage["partial"], outage["viewer_count"], outage["peak_viewers"]) == (1, truth[0], truth[0])
    inflated = [
        row
        for row in final.values()
        if not row["partial"] and max(row["peak_viewers"], row["viewer_count"]) > truth[0]
    ]
    assert not inflated, inflated


async def _holds(condition: bool) -> bool:
    return condition


async def _redis_ready(http: aiohttp.ClientSession, port: int, value: int) -> bool:
    return (await metrics(http, port)).get("gateway_redis_ready") == value
