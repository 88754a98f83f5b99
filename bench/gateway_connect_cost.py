"""CPU per connect + join + first count + disconnect, per transport, the official socket.io-client as load.

Run from the repository root (``npm ci --prefix bench/gateway_node`` once, for Node's socket.io)::

    .venv/bin/python -m bench.gateway_connect_cost --operations 2000

For each server — ``python -m socket_gateway`` as shipped, and Node socket.io 4.8
(``bench/gateway_node/server.js``) — and each transport of socket.io-client (``websocket`` only,
``polling`` only, and ``upgrading``: the default, long-polling then the upgrade to WebSocket), the
server runs pinned to CPU 0 and ``bench/connect_cost_client.cjs`` (socket.io-client 4.8 under Node,
the browser's client) to CPU 1. After a warm-up, the server's CPU time (utime + stime from /proc)
over ``--operations`` operations, divided by the operations done, is the figure; the ratio is ours
over Node's, measured side by side in one run. Loopback only; every step bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from testkit.measure import cpu_seconds
from testkit.processes import ServiceProcess

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "bench" / "connect_cost_client.cjs"
NODE_SERVER = REPO / "bench" / "gateway_node" / "server.js"
TRANSPORTS = ("websocket", "polling", "upgrading")
KEY = "bench-internal-key-0123456789"
STEP_TIMEOUT = 300.0


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else command


async def load(
    url: str, transport: str, operations: int, concurrency: int, path: str = "/socket.io/"
) -> dict[str, Any]:
    client = await asyncio.create_subprocess_exec(
        *pinned("1", ["node", str(CLIENT), url, transport, str(operations), str(concurrency), path]),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(client.communicate(), STEP_TIMEOUT)
    assert client.returncode == 0, f"load client exited {client.returncode}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def measure(
    pid: int, url: str, transport: str, operations: int, concurrency: int, path: str = "/socket.io/"
) -> dict[str, Any]:
    await load(url, transport, max(50, operations // 10), concurrency, path)  # warm-up
    before = cpu_seconds(pid)
    result = await load(url, transport, operations, concurrency, path)
    cpu = cpu_seconds(pid) - before
    return {**result, "cpu_seconds": cpu, "ms_per_operation": 1000 * cpu / max(1, result["done"])}


def gateway_env(workdir: Path) -> dict[str, str]:
    """``python -m socket_gateway`` for a load from one address: no limits, no ingest service."""
    return {
        **os.environ,
        "INTERNAL_API_KEY": KEY,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_GRPC_PORT": "0",
        "INGEST_TARGET": "127.0.0.1:1",
        "OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "ALLOWED_ORIGIN": "*",
        "GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE": "1000000",
        "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "ENV_FILE": "/dev/null",
    }


async def ours(transport: str, operations: int, concurrency: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="connect-cost-"))
    env = gateway_env(workdir)
    gateway = await ServiceProcess.start("socket_gateway", env, cpus="0" if shutil.which("taskset") else None)
    try:
        port = await gateway.listening_port("Socket gateway listening")
        return await measure(
            gateway.process.pid, f"http://127.0.0.1:{port}", transport, operations, concurrency
        )
    finally:
        await gateway.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def node(transport: str, operations: int, concurrency: int) -> dict[str, Any]:
    server = await asyncio.create_subprocess_exec(
        *pinned("0", ["node", str(NODE_SERVER)]), cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = json.loads(await asyncio.wait_for(server.stdout.readline(), STEP_TIMEOUT))["port"]
        return await measure(server.pid, f"http://127.0.0.1:{port}", transport, operations, concurrency)
    finally:
        server.terminate()
        await server.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    results: dict[str, Any] = {}
    for transport in args.transports:
        for name, serve in (("ours", ours), ("node", node)):
            results[f"{name}/{transport}"] = await serve(transport, args.operations, args.concurrency)
            print(json.dumps({f"{name}/{transport}": results[f"{name}/{transport}"]}), flush=True)
    for transport in args.transports:
        mine, theirs = results[f"ours/{transport}"], results[f"node/{transport}"]
        results[f"ratio/{transport}"] = mine["ms_per_operation"] / theirs["ms_per_operation"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    for transport in args.transports:
        mine, theirs = results[f"ours/{transport}"], results[f"node/{transport}"]
        print(
            f"{transport:10s} ours {mine['ms_per_operation']:.3f} ms/op"
            f" ({mine['done']} done, {mine['failed']} failed)"
            f"  node {theirs['ms_per_operation']:.3f} ms/op"
            f" ({theirs['done']} done, {theirs['failed']} failed)"
            f"  ratio {results[f'ratio/{transport}']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
