"""``python -m simulate`` against a real gateway on a free port: viewers join, churn, and the counts agree."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
from pathlib import Path

from simulate.main import simulate
from simulate.simulation import Progress, Simulation, SimulationConfig
from tests.gateway_support import gateway_config, running_gateway

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
