"""Running ``python -m ingest_service`` as a child process, pinned to one CPU, for a benchmark run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from testkit.processes import spawn

# Every variable the ingest service reads (see .env.example). The child gets exactly the values the
# benchmark chooses for these, never whatever the caller's shell happens to export.
_INGEST_VARIABLES = frozenset(
    {
        "INTERNAL_API_KEY",
        "SNAPSHOT_INTERVAL_SECONDS",
        "SAMPLE_INTERVAL_SECONDS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "INGEST_HOST",
        "INGEST_PORT",
        "MONGODB_URI",
        "MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS",
        "MONGODB_AUCTION_ID_TYPE",
        "MONGODB_AUCTIONS_COLLECTION",
        "MONGODB_WRITE_CONCERN",
        "MONGODB_WRITE_TIMEOUT_SECONDS",
        "MONGODB_READ_PREFERENCE",
        "ANALYTICS_SQLITE_PATH",
        "VIEWER_ANALYTICS_RETENTION_DAYS",
        "INGEST_SHUTDOWN_GRACE_SECONDS",
        "INGEST_MAX_MESSAGE_BYTES",
        "INGEST_FLAG_CACHE_SECONDS",
    }
)
_STARTUP_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 30.0


class IngestProcessError(RuntimeError):
    """The ingest service did not start, or did not stop cleanly."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of asking.

    The measured runs log at ``warning``, which hides the "Ingest service listening" line that
    carries the port chosen with ``INGEST_PORT=0``; so the benchmark chooses the port itself. Another
    process could take it in the instant before the service binds: the service then refuses to start
    (exit 2, naming the port) and the run stops loudly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class IngestProcess:
    """``python -m ingest_service`` in a child process; ``async with`` starts it and stops it with SIGTERM.

    Args:
        settings: the ingest variables to set (``INTERNAL_API_KEY``, ``ANALYTICS_SQLITE_PATH`` or
            ``MONGODB_URI``, ``LOG_LEVEL``...); ``INGEST_HOST`` and ``INGEST_PORT`` are chosen here.
        log_path: where the child's stderr (its log) goes; a file, so a full pipe can never stall it.
        cpu: the CPU the child is pinned to with ``taskset``, or None to leave it unpinned.
    """

    def __init__(self, settings: Mapping[str, str], log_path: Path, cpu: int | None) -> None:
        self._settings = dict(settings)
        self._log_path = log_path
        self._cpu = cpu
        self._process: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise IngestProcessError("the ingest service is not running")
        return self._process.pid

    async def __aenter__(self) -> IngestProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop(check=exc is None)

    async def start(self) -> None:
        """Starts the child and returns once its health service answers SERVING."""
        self.port = free_loopback_port()
        env = {name: value for name, value in os.environ.items() if name not in _INGEST_VARIABLES}
        env.update(self._settings)
        # The metrics listener on any free port (unset, it takes the one below INGEST_PORT, maybe busy).
        env.update({"INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(self.port), "INGEST_METRICS_PORT": "0"})
        cpus = None if self._cpu is None else str(self._cpu)
        with self._log_path.open("ab") as log:
            self._process = await spawn("ingest_service", env, stderr=log, stdout=log, cpus=cpus)
        try:
            await self._wait_until_serving()
        except BaseException:
            await self.stop(check=False)
            raise

    async def _wait_until_serving(self) -> None:
        assert self._process is not None
        exited = asyncio.ensure_future(self._process.wait())
        serving = asyncio.ensure_future(self._poll_health())
        try:
            done, _ = await asyncio.wait(
                (exited, serving), timeout=_STARTUP_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (exited, serving):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if serving in done:
            serving.result()
            return
        if exited in done:
            raise IngestProcessError(
                f"the ingest service exited with {exited.result()} before serving:\n{self.log_tail()}"
            )
        raise IngestProcessError(
            f"the ingest service was not serving within {_STARTUP_TIMEOUT_SECONDS} s:\n{self.log_tail()}"
        )

    async def _poll_health(self) -> None:
        request = health_pb2.HealthCheckRequest(service="")
        # The first attempts are refused until the child binds; gRPC's default reconnect backoff
        # (1 s and growing) would then dominate the start-up time.
        fast_reconnect = [
            ("grpc.initial_reconnect_backoff_ms", 20),
            ("grpc.min_reconnect_backoff_ms", 20),
            ("grpc.max_reconnect_backoff_ms", 100),
        ]
        async with grpc.aio.insecure_channel(self.target, options=fast_reconnect) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    response = await stub.Check(request, timeout=1.0, wait_for_ready=True)
                except grpc.aio.AioRpcError as error:
                    if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                    continue
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                # Registered but not yet SERVING: the status is set right after the server starts.
                await asyncio.sleep(0.01)

    async def stop(self, *, check: bool = True) -> None:
        """Sends SIGTERM and waits for the exit; with ``check``, anything but exit status 0 is an error."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            returncode = await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise IngestProcessError(
                f"the ingest service did not stop within {_STOP_TIMEOUT_SECONDS} s of SIGTERM"
            ) from None
        if check and returncode != 0:
            raise IngestProcessError(f"the ingest service exited with {returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the child wrote to stderr."""
        try:
            text = self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
