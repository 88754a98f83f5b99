"""CPU per operation on each Socket.IO path of GATEWAY_SOCKETIO_PATHS: the same cost on every path.

Run from the repository root::

    .venv/bin/python -m bench.gateway_paths_cost --operations 600 --rounds 2

One ``python -m socket_gateway`` serves ``/socket.io/``, ``/socket/`` and ``/auction/`` (the seed's
"Main IO" and "Auction IO"), pinned to CPU 0; ``bench/connect_cost_client.cjs`` (the official
socket.io-client 4.8 under Node) runs on CPU 1. An operation is connect + join + first count +
disconnect, as in ``bench.gateway_connect_cost``. For each transport (WebSocket only, polling only,
and the default: polling, then the upgrade) and round, every path is measured in turn, in an order
that rotates each round, after one warm-up; the figure is the gateway's CPU per operation done, and
each path's ratio to ``/socket.io/`` in the same run. Loopback only; every step bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway_connect_cost import TRANSPORTS, gateway_env, measure
from testkit.processes import ServiceProcess

PATHS = ("/socket.io/", "/socket/", "/auction/")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="paths-cost-"))
    env = {**gateway_env(workdir), "GATEWAY_SOCKETIO_PATHS": ",".join(PATHS)}
    gateway = await ServiceProcess.start("socket_gateway", env, cpus="0" if shutil.which("taskset") else None)
    samples: dict[str, dict[str, list[float]]] = {t: {p: [] for p in PATHS} for t in args.transports}
    failed = 0
    try:
        port = await gateway.listening_port("Socket gateway listening")
        url = f"http://127.0.0.1:{port}"
        for round_number in range(args.rounds):
            for transport in args.transports:
                order = PATHS[round_number % len(PATHS) :] + PATHS[: round_number % len(PATHS)]
                for path in order:
                    result = await measure(
                        gateway.process.pid, url, transport, args.operations, args.concurrency, path
                    )
                    failed += result["failed"]
                    samples[transport][path].append(result["ms_per_operation"])
                    print(json.dumps({"round": round_number, "transport": transport, "path": path, **result}))
    finally:
        await gateway.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures: dict[str, Any] = {"failed": failed, "transports": {}}
    for transport, by_path in samples.items():
        medians = {path: statistics.median(values) for path, values in by_path.items()}
        figures["transports"][transport] = {
            path: {
                "ms_per_operation": medians[path],
                "ratio_to_default_path": medians[path] / medians[PATHS[0]],
            }
            for path in PATHS
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=600, help="per path, transport and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    for transport, by_path in figures["transports"].items():
        row = "  ".join(
            f"{path} {f['ms_per_operation']:.3f} ms/op ({f['ratio_to_default_path']:.2f}x)"
            for path, f in by_path.items()
        )
        print(f"{transport:10s} {row}")
    print(f"failed operations: {figures['failed']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
