"""Starts the three services on embedded defaults with one shared fresh key, and stops them on Ctrl-C.

Production runs each service on its own (``python -m ingest_service`` and so on), usually on its own
host; this is the laptop and demo path: one command, everything local, SQLite and the outbox in
``data/``.

While the stack starts, a service that exits stops the start at once, named with its last log lines
(a busy port or a bad setting does not get better by retrying). Once the stack runs, a service that
exits on its own is named the same way and restarted with backoff while the other two keep running.
A service counts as ready only when local_stack's own child listens on its port and answers its
health check there: another process answering on that port does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import shlex
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphql_api.auth import Role, issue_token
from local_stack import child
from local_stack.listening import listens_on
from service_common.config import ConfigError
from service_common.grpc_tls import ClientTls, open_channel, read_client_tls
from service_common.supervision import Supervisor, TaskHealth

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
# How often a starting service's port and health are looked at.
READY_POLL_SECONDS = 0.2
# A service's last log lines shown when it exits: enough for a traceback's end or a one-line cause.
LAST_LINES = 10
# How long the rest of an exited child's log may take to arrive (its pipe closes when it exits).
LOG_DRAIN_SECONDS = 2.0
# A crashed service's restarts: after 1 s, doubling up to 30 s; one that then runs for a minute
# counts as recovered, so its next crash is restarted after 1 s again.
RESTART_INITIAL_BACKOFF_SECONDS = 1.0
RESTART_MAX_BACKOFF_SECONDS = 30.0
RESTART_STABLE_SECONDS = 60.0
_NAME_WIDTH = len("socket_gateway")


@dataclass
class Service:
    """One child service: how to start it, where it listens, and what it logged last."""

    name: str
    module: str
    port_variable: str
    grpc_health: bool = False
    process: asyncio.subprocess.Process | None = None
    relay: asyncio.Task[None] | None = None
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=LAST_LINES))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def services() -> list[Service]:
    """The three services, in start order (each one's dependencies first)."""
    return [
        Service("ingest_service", "ingest_service", "INGEST_PORT", grpc_health=True),
        Service("socket_gateway", "socket_gateway", "GATEWAY_PORT"),
        Service("graphql_api", "graphql_api", "GRAPHQL_PORT"),
    ]


class ServiceExited(Exception):
    """A service's process ended without local_stack asking it to."""

    def __init__(self, service: Service, code: int) -> None:
        self.service_name = service.name
        self.code = code
        self.last_lines = list(service.last_lines)
        super().__init__(f"{service.name} {describe_exit(code)}")


def describe_exit(code: int) -> str:
    """A child's return code in words: ``exited with code 2``, ``was killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


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
    # The ingest service's /metrics and probes, on the port below its gRPC one as it picks when unset
    # (the one above is the gateway's gRPC port); named here so that the banner can say where.
    if env["INGEST_PORT"].isdigit():
        env.setdefault("INGEST_METRICS_PORT", str(max(int(env["INGEST_PORT"]) - 1, 0)))
    # The GraphQL API's subscriptions read the live counts from the gateway's internal gRPC port.
    env.setdefault("GATEWAY_GRPC_PORT", "50052")
    env.setdefault("GATEWAY_GRPC_TARGET", f"127.0.0.1:{env['GATEWAY_GRPC_PORT']}")
    env.setdefault(
        "ALLOWED_ORIGIN", f"http://127.0.0.1:{env['GRAPHQL_PORT']},http://localhost:{env['GRAPHQL_PORT']}"
    )
    # The dashboard (served by the GraphQL API) opens its live view on the gateway at this address.
    env.setdefault("DASHBOARD_GATEWAY_URL", f"http://127.0.0.1:{env['GATEWAY_PORT']}")
    # Locally every browser tab and every simulated viewer comes from 127.0.0.1, so the per-address
    # limits meant for the internet would refuse `python -m simulate` beyond 120 viewers a minute
    # (and beyond 256 open at once).
    env.setdefault("GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE", "100000")
    env.setdefault("GATEWAY_MAX_CONNECTIONS_PER_ADDRESS", "0")
    return env


def banner(env: Mapping[str, str]) -> str:
    token = issue_token(
        env["GRAPHQL_JWT_SECRET"],
        subject="dev-admin",
        role=Role.ADMIN,
        auctions=[],
        now=time.time(),
        lifetime_seconds=12 * 3600,
    )
    graphql = f"http://127.0.0.1:{env['GRAPHQL_PORT']}"
    secret = shlex.quote(env["GRAPHQL_JWT_SECRET"])
    return "\n".join(
        [
            "",
            "Viewer Analytics is running (embedded defaults: SQLite).",
            f"  Dashboard        {graphql}/dashboard/#token={token}",
            "                   (opens with the admin token below; the token stays in that tab)",
            f"  GraphQL API      {graphql}/graphql   (GraphiQL in the browser; health {graphql}/healthz)",
            f"  Socket gateway   http://127.0.0.1:{env['GATEWAY_PORT']}   (Socket.IO at /socket.io/)",
            f"  Ingest service   {env['INGEST_TARGET']}   (gRPC, internal; key in x-internal-request)",
            *ingest_metrics_line(env),
            f"  Data             {os.path.dirname(env['ANALYTICS_SQLITE_PATH']) or '.'}/",
            "  Development admin token (12 h), send as 'Authorization: Bearer <token>':",
            f"    {token}",
            "  More tokens for this stack (signed with its development JWT secret), a seller's for example:",
            f"    GRAPHQL_JWT_SECRET={secret} .venv/bin/python -m graphql_api.dev_token"
            " --role seller --sub seller-1 --auctions auction-1",
            f"  Simulated viewers: .venv/bin/python -m simulate --gateway http://127.0.0.1:{env['GATEWAY_PORT']}",
            "  An auction run besides (lots and bids, sent to the ingest service as the backend would):",
            f"    INTERNAL_API_KEY={shlex.quote(env['INTERNAL_API_KEY'])} .venv/bin/python -m simulate"
            f" --gateway http://127.0.0.1:{env['GATEWAY_PORT']} --ingest {env['INGEST_TARGET']}"
            " --auction-run --enable-analytics",
            f"  A service that exits on its own is restarted (after {RESTART_INITIAL_BACKOFF_SECONDS:g} s,"
            f" doubling up to {RESTART_MAX_BACKOFF_SECONDS:g} s), the others keep running.",
            "  Ctrl-C stops all three cleanly.",
            "",
        ]
    )


def ingest_metrics_line(env: Mapping[str, str]) -> list[str]:
    """The banner's line for the ingest service's /metrics (none when INGEST_METRICS_PORT is off)."""
    port = env.get("INGEST_METRICS_PORT", "")
    if not port.isdigit() or port == "0":
        return []
    base = f"http://127.0.0.1:{port}"
    return [f"  Ingest metrics   {base}/metrics   (Prometheus text; probes {base}/healthz, {base}/readyz)"]


class Stack:
    """The child processes of one local_stack run: started, watched, restarted, stopped.

    Args:
        services: the services in start order; they are stopped in reverse.
        env: the children's environment (``stack_environment``).
        ingest_tls: what the ingest health check trusts: ``INGEST_TLS_CA_FILE`` from ``env``, when set.
        out: where local_stack's own lines and the children's logs go.
    """

    def __init__(
        self,
        services: Sequence[Service],
        env: Mapping[str, str],
        ingest_tls: ClientTls | None,
        out: TextIO,
    ) -> None:
        self.services = list(services)
        self.env = dict(env)
        self.ingest_tls = ingest_tls
        self.out = out
        self._announcers: set[asyncio.Task[None]] = set()

    def say(self, message: str) -> None:
        self.out.write(f"local_stack: {message}\n")
        self.out.flush()

    def say_exit(self, error: ServiceExited, then: str) -> None:
        shown = "".join(f"    {line}\n" for line in error.last_lines) or "    (it logged nothing)\n"
        self.out.write(f"local_stack: {error}; its last log lines:\n{shown}local_stack: {then}\n")
        self.out.flush()

    async def spawn(self, service: Service) -> None:
        service.last_lines.clear()
        # Forked from this thread, the event loop's, which lives as long as local_stack: the
        # parent-death signal set up by local_stack.child fires when the forking *thread* exits.
        process = await asyncio.create_subprocess_exec(
            *child.command(os.getpid(), service.module),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Own process group: a terminal's Ctrl-C reaches only this launcher, which then
            # stops the children in order (the gateway flushes to the ingest service first).
            # Killed outright, it cannot: then, on Linux, the kernel sends every child SIGTERM at
            # once (local_stack.child); what the gateway cannot flush stays in its outbox file.
            start_new_session=True,
        )
        assert process.stderr is not None
        service.process = process
        service.relay = asyncio.create_task(self._relay(service, process.stderr))

    async def _relay(self, service: Service, stream: asyncio.StreamReader) -> None:
        """Prefixes each of a child's log lines with its name, so three interleaved logs stay readable."""
        async for raw in stream:
            line = raw.decode(errors="replace")
            service.last_lines.append(line.rstrip("\n"))
            self.out.write(f"{service.name:<{_NAME_WIDTH}} | {line}")

    async def wait_exit(self, service: Service) -> ServiceExited:
        """Waits until the service's process ends and its log has been read to the end."""
        assert service.process is not None
        assert service.relay is not None
        code = await service.process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(service.relay), LOG_DRAIN_SECONDS)
        return ServiceExited(service, code)

    async def until_ready(self, service: Service) -> None:
        """Returns once the service's own process listens on its port and its health check passes."""
        assert service.process is not None
        pid = service.process.pid
        port = int(self.env[service.port_variable])
        async with self._health_probe(service, port) as healthy:
            # Another process's state: there is no event to await, so it is polled. Not just the
            # port: another process answering there is not this stack's service.
            while True:
                if listens_on(pid, port) is not False and await healthy():
                    return
                await asyncio.sleep(READY_POLL_SECONDS)

    @contextlib.asynccontextmanager
    async def _health_probe(
        self, service: Service, port: int
    ) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
        """A function that says whether the service answers its health check now."""
        if service.grpc_health:
            # The same TLS settings the gateway and the GraphQL API get from ``env``: when the
            # user has given the ingest service a certificate, its port speaks TLS only.
            async with open_channel(self.env["INGEST_TARGET"], self.ingest_tls) as channel:
                stub = health_pb2_grpc.HealthStub(channel)

                async def serving() -> bool:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
                    return False

                yield serving
        else:
            url = f"http://127.0.0.1:{port}/healthz"
            async with aiohttp.ClientSession() as http:

                async def answers() -> bool:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                            return response.status == 200
                    return False

                yield answers

    async def start(self, stop: asyncio.Event) -> bool:
        """Starts every service and waits until all are ready; ``False`` if one failed or it timed out.

        Returns ``True`` also when ``stop`` is set meanwhile (Ctrl-C while starting).
        """
        for service in self.services:
            await self.spawn(service)
        readiness = {asyncio.create_task(self.until_ready(s)): s for s in self.services}
        exits = [asyncio.create_task(self.wait_exit(s)) for s in self.services]
        stopping = asyncio.create_task(stop.wait())
        tasks: list[asyncio.Task[Any]] = [*readiness, *exits, stopping]
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        try:
            while not (stopping.done() or all(task.done() for task in readiness)):
                for exited in (task for task in exits if task.done()):
                    self.say_exit(
                        exited.result(),
                        "stopping the others (a service that fails while the stack starts would fail again)",
                    )
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._say_not_ready([s for task, s in readiness.items() if not task.done()])
                    return False
                await asyncio.wait(
                    [task for task in tasks if not task.done()],
                    timeout=remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            return True
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _say_not_ready(self, waiting: Sequence[Service]) -> None:
        for service in waiting:
            port = self.env[service.port_variable]
            shown = "".join(f"    {line}\n" for line in service.last_lines) or "    (it logged nothing)\n"
            self.out.write(
                f"local_stack: {service.name} did not become ready within {READY_TIMEOUT_SECONDS:g} s"
                f" (its own process listening on port {port} and healthy); its last log lines:\n{shown}"
            )
        self.say("stopping")

    def _report_crash(self, health: TaskHealth, error: Exception, delay: float) -> None:
        if isinstance(error, ServiceExited):
            self.say_exit(error, f"restarting {error.service_name} in {delay:.1f} s")
        else:
            self.say(f"{health.name}: {health.last_error}; restarting it in {delay:.1f} s")

    async def _keep_running(self, service: Service) -> None:
        """One supervised run of a service: (re)starts it if needed and raises when it exits."""
        if not service.running:
            await self.spawn(service)
            announcer = asyncio.create_task(self._announce_when_ready(service))
            self._announcers.add(announcer)
            announcer.add_done_callback(self._announcers.discard)
        raise await self.wait_exit(service)

    async def _announce_when_ready(self, service: Service) -> None:
        assert service.process is not None
        pid = service.process.pid
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.until_ready(service), READY_TIMEOUT_SECONDS)
            self.say(f"{service.name} is running again (pid {pid})")

    async def run(self, stop: asyncio.Event) -> int:
        """Starts the services, keeps them running until ``stop`` is set, then stops them in reverse."""
        supervisor = Supervisor(
            initial_backoff_seconds=RESTART_INITIAL_BACKOFF_SECONDS,
            max_backoff_seconds=RESTART_MAX_BACKOFF_SECONDS,
            stable_seconds=RESTART_STABLE_SECONDS,
            report_failure=self._report_crash,
        )
        try:
            if not await self.start(stop):
                return 1
            if stop.is_set():
                return 0
            print(banner(self.env), file=self.out, flush=True)
            for service in self.services:
                supervisor.start(service.name, functools.partial(self._keep_running, service))
            await stop.wait()
            return 0
        finally:
            await supervisor.stop()
            for announcer in list(self._announcers):
                announcer.cancel()
            await asyncio.gather(*self._announcers, return_exceptions=True)
            for service in reversed(self.services):
                await self._stop(service)
            await asyncio.gather(
                *(s.relay for s in self.services if s.relay is not None), return_exceptions=True
            )

    async def _stop(self, service: Service) -> None:
        process = service.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            self.say(f"{service.name} did not stop in time; killing it")
            process.kill()
            await process.wait()


async def run(stack: Stack) -> int:
    """Runs ``stack`` until SIGINT or SIGTERM; returns local_stack's exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    if not child.SUPPORTED:
        stack.say(
            f"{child.UNSUPPORTED_REASON}: if local_stack is killed outright (SIGKILL),"
            " stop its services yourself"
        )
    return await stack.run(stop)


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
    sys.exit(asyncio.run(run(Stack(services(), env, ingest_tls, sys.stderr))))
