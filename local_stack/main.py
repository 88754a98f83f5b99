"""Starts the three services on embedded defaults with one shared fresh key, and stops them on Ctrl-C.

Production runs each service on its own (``python -m ingest_service`` and so on), usually on its own
host; this is the laptop and demo path: one command, everything local, SQLite and the outbox in
``data/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphql_api.auth import Role, issue_token
from local_stack import child
from service_common.config import ConfigError
from service_common.grpc_tls import ClientTls, open_channel, read_client_tls

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass
class Service:
    name: str
    module: str
    process: asyncio.subprocess.Process | None = None


def stack_environment(base: Mapping[str, str], data_dir: str) -> dict[str, str]:
    """The children's environment: ``base`` plus generated secrets and local defaults it does not set."""
    env = dict(base)
    env.setdefault("INTERNAL_API_KEY", secrets.token_urlsafe(32))
    env.setdefault("GRAPHQL_JWT_SECRET", secrets.token_urlsafe(32))
    env.setdefault("GRAPHQL_DEV_MODE", "true")
    env.setdefault("LOG_FORMAT", "text")
    env.setdefault("ANALYTICS_SQLITE_PATH", os.path.join(data_dir, "viewer_analytics.sqlite3"))
    env.setdefault("OUTBOX_PATH", os.path.join(data_dir, "gateway_outbox.sqlite3"))
    env.setdefault("INGEST_PORT", "50051")
    env.setdefault("GATEWAY_PORT", "8081")
    env.setdefault("GRAPHQL_PORT", "8080")
    env.setdefault("INGEST_TARGET", f"127.0.0.1:{env['INGEST_PORT']}")
    env.setdefault(
        "ALLOWED_ORIGIN", f"http://127.0.0.1:{env['GRAPHQL_PORT']},http://localhost:{env['GRAPHQL_PORT']}"
    )
    # The dashboard (served by the GraphQL API) opens its live view on the gateway at this address.
    env.setdefault("DASHBOARD_GATEWAY_URL", f"http://127.0.0.1:{env['GATEWAY_PORT']}")
    # Locally every browser tab and every simulated viewer comes from 127.0.0.1, so the per-address
    # limit meant for the internet would refuse `python -m simulate` beyond 120 viewers a minute.
    env.setdefault("GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE", "100000")
    return env


async def _relay(name: str, stream: asyncio.StreamReader) -> None:
    """Prefixes each of a child's log lines with its name, so three interleaved logs stay readable."""
    width = len("socket_gateway")
    async for line in stream:
        sys.stderr.write(f"{name:<{width}} | {line.decode(errors='replace')}")


async def _wait_until_ready(env: Mapping[str, str], ingest_tls: ClientTls | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    # The same TLS settings the gateway and the GraphQL API get from ``env``: when the user has given
    # the ingest service a certificate, its port speaks TLS only.
    async with open_channel(env["INGEST_TARGET"], ingest_tls) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the ingest service did not become healthy")
            await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as http:
        for port_variable in ("GATEWAY_PORT", "GRAPHQL_PORT"):
            url = f"http://127.0.0.1:{env[port_variable]}/healthz"
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer")
                await asyncio.sleep(0.2)


def _banner(env: Mapping[str, str]) -> str:
    token = issue_token(
        env["GRAPHQL_JWT_SECRET"],
        subject="dev-admin",
        role=Role.ADMIN,
        auctions=[],
        now=time.time(),
        lifetime_seconds=12 * 3600,
    )
    graphql = f"http://127.0.0.1:{env['GRAPHQL_PORT']}"
    return "\n".join(
        [
            "",
            "Viewer Analytics is running (embedded defaults: SQLite).",
            f"  Dashboard        {graphql}/dashboard/#token={token}",
            "                   (opens with the admin token below; the token stays in that tab)",
            f"  GraphQL API      {graphql}/graphql   (GraphiQL in the browser; health {graphql}/healthz)",
            f"  Socket gateway   http://127.0.0.1:{env['GATEWAY_PORT']}   (Socket.IO at /socket.io/)",
            f"  Ingest service   {env['INGEST_TARGET']}   (gRPC, internal; key in x-internal-request)",
            f"  Data             {os.path.dirname(env['ANALYTICS_SQLITE_PATH']) or '.'}/",
            "  Development admin token (12 h), send as 'Authorization: Bearer <token>':",
            f"    {token}",
            f"  Simulated viewers: .venv/bin/python -m simulate --gateway http://127.0.0.1:{env['GATEWAY_PORT']}",
            "  Ctrl-C stops all three cleanly.",
            "",
        ]
    )


async def run(services: Sequence[Service], env: dict[str, str], ingest_tls: ClientTls | None) -> int:
    """Starts ``services`` in order, waits for a stop signal or a child's death, stops them in reverse.

    ``ingest_tls`` is what the health check trusts: ``INGEST_TLS_CA_FILE`` from ``env``, when set.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    relays: list[asyncio.Task[None]] = []
    exit_code = 0
    if not child.SUPPORTED:
        print(
            f"local_stack: {child.UNSUPPORTED_REASON}: if local_stack is killed outright (SIGKILL),"
            " stop its services yourself",
            file=sys.stderr,
        )
    try:
        for service in services:
            # Forked from this thread, the event loop's, which lives as long as local_stack: the
            # parent-death signal set up by local_stack.child fires when the forking *thread* exits.
            service.process = await asyncio.create_subprocess_exec(
                *child.command(os.getpid(), service.module),
                env=env,
                stderr=asyncio.subprocess.PIPE,
                # Own process group: a terminal's Ctrl-C reaches only this launcher, which then
                # stops the children in order (the gateway flushes to the ingest service first).
                # Killed outright, it cannot: then, on Linux, the kernel sends every child SIGTERM at
                # once (local_stack.child); what the gateway cannot flush stays in its outbox file.
                start_new_session=True,
            )
            assert service.process.stderr is not None
            relays.append(asyncio.create_task(_relay(service.name, service.process.stderr)))
        children = [asyncio.create_task(s.process.wait()) for s in services if s.process is not None]
        stop_waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait_for(_wait_until_ready(env, ingest_tls), READY_TIMEOUT_SECONDS)
            print(_banner(env), file=sys.stderr, flush=True)
        except TimeoutError as error:
            print(f"local_stack: {error}; stopping", file=sys.stderr)
            exit_code = 1
            stop.set()
        done, _ = await asyncio.wait([stop_waiter, *children], return_when=asyncio.FIRST_COMPLETED)
        if stop_waiter not in done:
            print("local_stack: a service exited unexpectedly; stopping the others", file=sys.stderr)
            exit_code = 1
        stop_waiter.cancel()
    finally:
        for service in reversed(services):
            await _stop(service)
        await asyncio.gather(*relays, return_exceptions=True)
    return exit_code


async def _stop(service: Service) -> None:
    process = service.process
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        print(f"local_stack: {service.name} did not stop in time; killing it", file=sys.stderr)
        process.kill()
        await process.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    parser.add_argument("--data-dir", default="data", help="where SQLite and the outbox live (default: data)")
    arguments = parser.parse_args(argv)
    os.makedirs(arguments.data_dir, exist_ok=True)
    env = stack_environment(os.environ, arguments.data_dir)
    try:
        ingest_tls = read_client_tls(env)
    except ConfigError as error:
        print(f"local_stack: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    services = [
        Service("ingest_service", "ingest_service"),
        Service("socket_gateway", "socket_gateway"),
        Service("graphql_api", "graphql_api"),
    ]
    sys.exit(asyncio.run(run(services, env, ingest_tls)))
