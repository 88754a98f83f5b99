"""``python -m simulate --auction-run``: simulated viewers on a real gateway and lots and bids sent to a
real ingest service over gRPC, read back through the ingest service's AuctionAudienceService."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_audience_service_pb2_grpc as audience_grpc
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2

from simulate.auction_run import AuctionRunConfig
from simulate.main import parse_arguments, simulate
from simulate.simulation import SimulationConfig
from tests.conftest import RunningIngest
from tests.gateway_support import gateway_config, running_gateway
from tests.support import TEST_KEY

REPO = Path(__file__).resolve().parents[2]


def run_config(ingest: RunningIngest, **changes: object) -> AuctionRunConfig:
    settings: dict[str, object] = {
        "ingest_target": ingest.target,
        "internal_key": TEST_KEY,
        "lots": 3,
        "lot_seconds": 1.2,
        "pause_seconds": 0.2,
        "bids_per_lot": 8.0,
        "signed_in_share": 0.5,
        "enable_analytics": True,
    }
    settings.update(changes)
    return AuctionRunConfig(**settings)  # type: ignore[arg-type]


async def test_an_auction_run_fills_the_per_lot_view(tmp_path: Path, ingest: RunningIngest) -> None:
    async with running_gateway(gateway_config(tmp_path, ingest_target=ingest.target)) as gateway:
        config = SimulationConfig(
            gateway.url, viewers=8, auctions=2, duration_seconds=8.0, churn_per_minute=0, seed=3
        )
        out = io.StringIO()
        final = await simulate(config, 0.5, out, run_config(ingest))
    assert final.connected == 8
    printed = out.getvalue()
    assert "simulate: auction run done; 6 lots closed" in printed, printed
    assert "lots 6/6 bids" in printed  # the progress line carries the auction run's

    client = ingest.client()
    stub = audience_grpc.AuctionAudienceServiceStub(client.channel)
    signed_in = {f"sim-viewer-{number}" for number in range(4)}  # half of the 8 viewer ids
    total_bids = 0
    for auction_id in config.auction_ids:
        lots = await stub.QueryLotAudience(
            audience_pb2.QueryLotAudienceRequest(auction_id=auction_id), metadata=client.metadata
        )
        assert [lot.lot_id.rsplit("-", 1)[0] for lot in lots.lots] == ["lot-1", "lot-2", "lot-3"]
        for lot in lots.lots:
            assert lot.HasField("closed_at")
            assert lot.outcome in (
                events_pb2.LOT_OUTCOME_SOLD,
                events_pb2.LOT_OUTCOME_PASSED,
                events_pb2.LOT_OUTCOME_WITHDRAWN,
            )
            assert (lot.outcome == events_pb2.LOT_OUTCOME_PASSED) == (lot.bids == 0)
            if lot.outcome == events_pb2.LOT_OUTCOME_SOLD:
                assert lot.winner_bidder_id in signed_in
                assert lot.hammer_price >= 10_000
            total_bids += lot.bids
        bids = await stub.QueryBidsAgainstViewers(
            audience_pb2.QueryBidsAgainstViewersRequest(auction_id=auction_id), metadata=client.metadata
        )
        # Bidders are signed-in viewers in that auction's room (viewers are dealt round-robin).
        assert {bid.bidder_id for bid in bids.bids} <= {
            viewer
            for viewer in signed_in
            if int(viewer.rsplit("-", 1)[1]) % 2 == config.auction_ids.index(auction_id)
        }
    assert total_bids > 0, "eight bids a lot on average, a quarter of the lots unwanted: some bids"
    assert f"{total_bids} bids" in printed


async def test_events_of_an_auction_with_analytics_off_are_reported_skipped(
    tmp_path: Path, ingest: RunningIngest
) -> None:
    async with running_gateway(gateway_config(tmp_path, ingest_target=ingest.target)) as gateway:
        config = SimulationConfig(
            gateway.url, viewers=2, auctions=1, duration_seconds=1.0, churn_per_minute=0
        )
        out = io.StringIO()
        await simulate(config, 0.5, out, run_config(ingest, lots=1, lot_seconds=0.3, enable_analytics=False))
    assert "events were skipped because analytics are off" in out.getvalue(), out.getvalue()


async def test_a_wrong_internal_key_stops_the_auction_run_with_a_sentence(
    tmp_path: Path, ingest: RunningIngest
) -> None:
    async with running_gateway(gateway_config(tmp_path, ingest_target=ingest.target)) as gateway:
        config = SimulationConfig(
            gateway.url, viewers=2, auctions=1, duration_seconds=1.0, churn_per_minute=0
        )
        out = io.StringIO()
        final = await simulate(config, 0.5, out, run_config(ingest, internal_key="not-the-key"))
    assert final.connected == 2  # the viewers ran regardless
    assert "the auction run stopped: the ingest service at" in out.getvalue()
    assert "refused the internal key" in out.getvalue()


def test_the_auction_run_needs_a_key_and_lasts_as_long_as_its_lots() -> None:
    config, _, _, auction_run = parse_arguments(
        ["--auction-run", "--lots", "4", "--lot-seconds", "10", "--pause-seconds", "2"],
        env={"INTERNAL_API_KEY": "k"},
    )
    assert auction_run is not None
    assert (auction_run.internal_key, auction_run.lots) == ("k", 4)
    assert config.duration_seconds == 4 * 12 + 5
    result = subprocess.run(
        [sys.executable, "-m", "simulate", "--auction-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "--auction-run needs the ingest service's key" in result.stderr
