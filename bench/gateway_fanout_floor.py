"""The kernel's floor under fan-out: CPU per 90-byte send to each of N loopback TCP sockets, in a bare loop.

Run from the repository root (seconds)::

    .venv/bin/python -m bench.gateway_fanout_floor --sockets 1000 --rounds 100

``bench.gateway_bench fanout`` charges the server the CPU of every delivered ``viewerCountUpdate``.
On loopback most of that is the kernel's: each ``send`` on a socket with ``TCP_NODELAY`` (asyncio
sets it on every connection, Node's http server too) runs the whole TCP transmit and, in the same
system call, the receive side of the peer's socket. This measures what is left when every line of
the gateway is gone: a sender pinned to CPU 0 writes one frame-sized message to each of N accepted
sockets per round, in a plain loop of ``socket.send``; a reader process pinned to CPU 1 (epoll,
``os.read``) drains them all. The sender's own CPU time (utime + stime) over N x rounds messages is
the floor a server on this machine pays per delivered message, whatever its language.

Loopback only; bounded: N sockets, a fixed number of rounds, a 2 ms pause between rounds.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import time

# A viewerCountUpdate as the gateway frames it for the fan-out benchmark's room: a WebSocket text frame.
_EVENT = b'42["viewerCountUpdate",{"auctionId":"bench","viewerCount":1000,"uniqueViewers":1000}]'
FRAME = b"\x81" + bytes([len(_EVENT)]) + _EVENT
SENDER_CPU, READER_CPU = 0, 1
ROUND_PAUSE_SECONDS = 0.002
READ_TIMEOUT_SECONDS = 120.0


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _read_everything(port: int, sockets: int, expected_bytes: int) -> None:
    """The reader process: opens the connections, then reads until every message has arrived."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {READER_CPU})
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(sockets)]
    poller = select.epoll()
    for connection in connections:
        connection.setblocking(False)
        poller.register(connection.fileno(), select.EPOLLIN)
    received = 0
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    while received < expected_bytes and time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            try:
                received += len(os.read(fd, 65536))
            except BlockingIOError:
                continue
    os._exit(0 if received >= expected_bytes else 1)


def measure(sockets: int, rounds: int) -> float:
    """CPU µs the sender spends per message."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(min(sockets, 4096))
    port = listener.getsockname()[1]
    reader = os.fork()
    if reader == 0:
        listener.close()
        _read_everything(port, sockets, sockets * rounds * len(FRAME))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {SENDER_CPU})
    accepted = []
    for _ in range(sockets):
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted.append(connection)
    before = _cpu_seconds()
    for _ in range(rounds):
        for connection in accepted:
            connection.send(FRAME)
        time.sleep(ROUND_PAUSE_SECONDS)
    used = _cpu_seconds() - before
    _, status = os.waitpid(reader, 0)
    for connection in accepted:
        connection.close()
    listener.close()
    if status != 0:
        raise RuntimeError("the reader did not receive every message")
    return used / (sockets * rounds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    for sockets in args.sockets:
        figures = sorted(measure(sockets, args.rounds) for _ in range(args.repetitions))
        print(
            f"{sockets:>6,} sockets: {figures[len(figures) // 2]:.2f} µs of CPU per message"
            f" (range {figures[0]:.2f}-{figures[-1]:.2f}, {args.repetitions} repetitions)",
            flush=True,
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
