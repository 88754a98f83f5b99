"""``python -m simulate`` against a real gateway on a free port: viewers join, churn, and the counts agree."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from simulate.main import simulate
from simulate.simulation import Progress, Simulation, SimulationConfig
from tests.fault_support import base_env, service
from tests.gateway_support import gateway_config, running_gateway, wait_until
from tests.stack_support import ProcessLog

REPO = Path(__file__).resolve().parents[2]


async def test_viewers_churn_between_rooms_and_the_gateway_counts_what_the_simulation_expects(
    tmp_path: Path,
) -> None:
    async with running_gateway(gateway_config(tmp_path, count_update_interval_ms=50)) as gateway:
        config = SimulationConfig(
            gateway_url=gateway.url,
            viewers=8,
            auctions=2,
            duration_seconds=1.5,
            churn_per_minute=120,
            tabs_per_viewer=2,
            auction_prefix="sim-",
            seed=7,
        )
        registry = gateway.gateway.registry
        reports: list[Progress] = []
        # The gateway's own counts at each report; the last report comes before anyone disconnects.
        gateway_counts: list[dict[str, tuple[int, int]]] = []

        def report(progress: Progress) -> None:
            reports.append(progress)
            gateway_counts.append(
                {
                    auction: (registry.counts(auction).viewer_count, registry.counts(auction).unique_viewers)
                    for auction in config.auction_ids
                }
            )

        simulation = Simulation(config)
        final = await simulation.run(asyncio.Event(), report, 0.5)

        assert (final.connected, final.refused, final.failed_events) == (8, 0, 0)
        assert final.leaves >= 4, "at 2 leaves per viewer per second, 8 viewers leave often in 1.5 s"
        # Every viewer joined once on connecting; every later join followed a leave.
        assert 8 <= final.joins <= 8 + final.leaves
        in_rooms = sum(final.simulated.values())
        assert in_rooms == 8 - (final.leaves - (final.joins - 8))
        # The gateway's last broadcast in each occupied room is what the simulation holds there.
        assert final.rooms_agree(), (final.simulated, final.simulated_unique, final.reported)
        assert gateway_counts[-1] == {
            auction: (final.simulated[auction], final.simulated_unique[auction])
            for auction in config.auction_ids
        }
        assert len(reports) >= 3, "progress every 0.5 s, and once at the end"
        assert "joins" in reports[-1].line(config.duration_seconds)

        # Every connection is closed once the simulation returns.
        assert not any(viewer.client.connected for viewer in simulation.viewers)


async def test_an_unreachable_gateway_is_reported_in_a_sentence() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        out = io.StringIO()
        final = await simulate(SimulationConfig(url, viewers=2, duration_seconds=0), 1.0, out)
    assert final.connected == 0
    assert final.refused == 2
    assert f"no viewer could connect to {url}: is the gateway running?" in out.getvalue()


def test_help_documents_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulate", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for option in ("--gateway", "--viewers", "--auctions", "--seconds", "--churn", "--tabs"):
        assert option in result.stdout


async def test_viewers_reconnect_to_a_restarted_gateway_and_rejoin_their_rooms(tmp_path: Path) -> None:
    """The gateway stops (its clients get its goodbye) and another starts on the same port: every
    simulated viewer reconnects and is counted again in the room it was in."""
    config = SimulationConfig(
        gateway_url="",
        viewers=6,
        auctions=2,
        duration_seconds=120,
        churn_per_minute=0,
        auction_prefix="restart-",
    )
    stop = asyncio.Event()
    async with running_gateway(gateway_config(tmp_path / "first")) as first:
        config = dataclasses.replace(config, gateway_url=first.url)
        simulation = Simulation(config)
        running = asyncio.create_task(simulation.run(stop, lambda progress: None, 0.5))
        try:
            await wait_until(lambda: simulation.snapshot().connected == 6, "all six viewers connected")
            port = first.port
            await first.stop()
            await wait_until(lambda: simulation.snapshot().connected == 0, "the viewers to see it go")
            async with running_gateway(gateway_config(tmp_path / "second", port=port)) as second:
                registry = second.gateway.registry

                def counted_again() -> bool:
                    progress = simulation.snapshot()
                    return progress.connected == 6 and all(
                        registry.counts(auction).viewer_count == progress.simulated[auction] == 3
                        for auction in config.auction_ids
                    )

                await wait_until(counted_again, "the viewers back, each in its room, on the new gateway")
                stop.set()
                final = await asyncio.wait_for(running, 30)
        finally:
            stop.set()
            await asyncio.gather(running, return_exceptions=True)
    assert (final.dropped, final.reconnected) == (6, 6)
    assert final.rooms_agree(), (final.simulated, final.reported)


# The gateway's pings, shortened so that a stalled gateway is noticed in seconds. Each stays above
# 5 s: python-engineio's client gives up waiting to send at max(interval, timeout) + 5 s, before its
# reader notices the silence at interval + timeout, and logs an ERROR then, the line to be kept out.
STALL_PING_SECONDS = "6"


async def test_a_stalled_gateway_is_survived_and_ctrl_c_exits_cleanly_with_only_simulate_lines(
    tmp_path: Path,
) -> None:
    """``python -m simulate`` as a user runs it: the gateway freezes (SIGSTOP) until the viewers'
    clients give up on it, then thaws; the viewers reconnect; Ctrl-C ends the run with exit code 0.
    Its output holds only its own lines: no traceback, no line of python-engineio's."""
    env = base_env(
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT="0",
        GATEWAY_GRPC_PORT="0",
        INGEST_TARGET="127.0.0.1:1",
        OUTBOX_PATH=str(tmp_path / "outbox.sqlite3"),
        ALLOWED_ORIGIN="*",
        GATEWAY_CONNECTIONS_PER_IP_PER_MINUTE="100000",
        GATEWAY_PING_INTERVAL_SECONDS=STALL_PING_SECONDS,
        GATEWAY_PING_TIMEOUT_SECONDS=STALL_PING_SECONDS,
    )
    async with service("socket_gateway", env) as gateway:
        port = int((await gateway.log_entry("Socket gateway listening"))["port"])
        simulate_process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulate",
            *("--gateway", f"http://127.0.0.1:{port}", "--viewers", "4", "--churn", "0"),
            *("--seconds", "300", "--every", "0.2"),
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert simulate_process.stderr is not None
        log = ProcessLog(simulate_process.stderr)
        try:
            # "s  connected N ": the progress line's count, not "reconnected N" further on.
            await log.line_with("s  connected 4 ")
            gateway.process.send_signal(signal.SIGSTOP)
            try:
                gone = await log.line_with("s  connected 0 ")
            finally:
                gateway.process.send_signal(signal.SIGCONT)
            back = await log.line_with("s  connected 4 ", after=gone)
            assert "dropped 4 reconnected 4" in log.lines[back], log.lines[back]
            simulate_process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(simulate_process.wait(), 30) == 0, log.text
            await log.ended()
        finally:
            if simulate_process.returncode is None:
                simulate_process.kill()
                await simulate_process.wait()
    own = re.compile(r"^(simulate: |\s*\d+/\d+ s  connected )")
    foreign = [line for line in log.lines if not own.match(line)]
    assert foreign == [], log.text
    assert "simulate: done" in log.lines[-1]
