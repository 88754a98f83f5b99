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

``--before-tree DIR`` also measures the gateway of another checkout (say a detached worktree of the
commit before a change) in the same run, and ``--rounds N`` repeats every cell N times, the servers'
order rotating each round, so that before, after and Node share the machine's drift (``--tree
NAME=DIR`` adds more checkouts, say each step of a change); the figures are then each cell's median
with its range::

    .venv/bin/python -m bench.gateway_connect_cost --operations 600 --rounds 3 --before-tree /tmp/before
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

from testkit.measure import cpu_seconds
from testkit.processes import ServiceProcess, spawn

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


async def ours(transport: str, operations: int, concurrency: int, tree: Path = REPO) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="connect-cost-"))
    # The gateway of ``tree``: run from there, its packages found there first.
    env = {**gateway_env(workdir), "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "generated")])}
    cpus = "0" if shutil.which("taskset") else None
    gateway = ServiceProcess(
        await spawn("socket_gateway", env, stderr=asyncio.subprocess.PIPE, cpus=cpus, cwd=tree)
    )
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


def _gateway_of(tree: Path) -> Any:
    async def serve(transport: str, operations: int, concurrency: int) -> dict[str, Any]:
        return await ours(transport, operations, concurrency, tree)

    return serve


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    servers: list[tuple[str, Any]] = [("ours", ours)]
    for name, tree in args.trees:
        servers.append((name, _gateway_of(tree)))
    servers.append(("node", node))
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        for transport in args.transports:
            shift = round_number % len(servers)
            for name, serve in servers[shift:] + servers[:shift]:
                result = await serve(transport, args.operations, args.concurrency)
                runs.setdefault(f"{name}/{transport}", []).append(result)
                print(json.dumps({"round": round_number, f"{name}/{transport}": result}), flush=True)
    results: dict[str, Any] = {}
    for cell, measured in runs.items():
        figures = [one["ms_per_operation"] for one in measured]
        results[cell] = {
            "ms_per_operation": statistics.median(figures),
            "range": [min(figures), max(figures)],
            "done": sum(one["done"] for one in measured),
            "failed": sum(one["failed"] for one in measured),
            "runs": measured,
        }
    for transport in args.transports:
        theirs = results[f"node/{transport}"]["ms_per_operation"]
        for name, _ in servers:
            if name != "node":
                mine = results[f"{name}/{transport}"]["ms_per_operation"]
                results[f"ratio/{name}/{transport}"] = mine / theirs
        # Each round's own ratio, ours over Node's in that round: the spread of the comparison.
        results[f"ratio_per_round/{transport}"] = [
            ours_run["ms_per_operation"] / node_run["ms_per_operation"]
            for ours_run, node_run in zip(runs[f"ours/{transport}"], runs[f"node/{transport}"], strict=True)
        ]
    results["servers"] = [name for name, _ in servers]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--rounds", type=int, default=1, help="every cell this many times, order rotating")
    parser.add_argument("--before-tree", type=Path, help="also measure the gateway of this checkout")
    parser.add_argument(
        "--tree", action="append", default=[], metavar="NAME=DIR", help="and of this one, named NAME"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    named = ([f"before={args.before_tree}"] if args.before_tree is not None else []) + args.tree
    pairs = (one.partition("=") for one in named)
    args.trees = [(name, Path(directory).resolve()) for name, _, directory in pairs]
    results = asyncio.run(run(args))
    for transport in args.transports:
        cells = []
        for name in results["servers"]:
            cell = results[f"{name}/{transport}"]
            low, high = cell["range"]
            cells.append(
                f"{name} {cell['ms_per_operation']:.3f} ms/op ({low:.2f}-{high:.2f};"
                f" {cell['done']} done, {cell['failed']} failed)"
            )
        ratios = "  ".join(
            f"ratio {name} {results[f'ratio/{name}/{transport}']:.2f}"
            for name in results["servers"]
            if name != "node"
        )
        per_round = ", ".join(f"{ratio:.2f}" for ratio in results[f"ratio_per_round/{transport}"])
        print(f"{transport:10s} {'  '.join(cells)}  {ratios}  (ours/node per round: {per_round})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
