"""Cost of one Socket.IO disconnect against how many sockets are connected: python-socketio's
manager as shipped against the gateway's indexed one (socket_gateway/live/room_index.py), same run.

    .venv/bin/python -m bench.socketio_rooms

In-process, no sockets: the managers' bookkeeping is what is measured. Each of N connected
sockets is in its own room and one of 100 auction rooms, as in the gateway; 500 of them
disconnect, timed with perf_counter (median of 5 repetitions).
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from typing import Any

import socketio  # type: ignore[import-untyped]
from socketio.base_manager import BaseManager  # type: ignore[import-untyped]

from socket_gateway.live.room_index import IndexedManager

DISCONNECTS = 500


def filled(kind: type[Any], sockets: int) -> tuple[Any, list[str]]:
    server = socketio.AsyncServer(async_mode="aiohttp")
    numbers = itertools.count()
    server.eio.generate_id = lambda: f"sid{next(numbers)}"
    manager = kind()
    manager.set_server(server)
    sids = []
    for index in range(sockets):
        sid = BaseManager.pre_connect(manager, f"eio{index}", "/")
        BaseManager.connect(manager, sid, "/")
        manager.basic_enter_room(sid, "/", f"auction:{index % 100}")
        sids.append(sid)
    return manager, sids


def microseconds_per_disconnect(kind: type[Any], sockets: int) -> float:
    runs = []
    for _ in range(5):
        manager, sids = filled(kind, sockets)
        started = time.perf_counter()
        for sid in sids[:DISCONNECTS]:
            manager.basic_disconnect(sid, "/")
        runs.append((time.perf_counter() - started) / DISCONNECTS * 1e6)
    return statistics.median(runs)


def main() -> None:
    print("| sockets connected | python-socketio µs/disconnect | indexed µs/disconnect | ratio |")
    print("|---:|---:|---:|---:|")
    for sockets in (1_000, 5_000, 20_000):
        stock = microseconds_per_disconnect(socketio.AsyncManager, sockets)
        indexed = microseconds_per_disconnect(IndexedManager, sockets)
        print(f"| {sockets:,} | {stock:.1f} | {indexed:.1f} | {stock / indexed:.0f}x |", flush=True)
        print(json.dumps({"sockets": sockets, "stock_us": round(stock, 2), "indexed_us": round(indexed, 2)}))


if __name__ == "__main__":
    main()
