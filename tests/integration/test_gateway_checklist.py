"""The seed's functional checklist, end to end: real clients, a real gateway, the real ingest service."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.conftest import RunningIngest
from tests.gateway_support import ManualClock, gateway_config, running_gateway, stored_snapshots

# The default path, and the seed's two ("Main IO", "Auction IO"), on which the seed's frontend
# connects: its tabs may sit on either.
PATHS = {"default": ("/socket.io/",), "seed": ("/socket/", "/auction/")}


@pytest.mark.parametrize("paths", PATHS.values(), ids=PATHS.keys())
async def test_live_view_counts_and_minute_snapshot(
    ingest: RunningIngest, tmp_path: Path, caplog: pytest.LogCaptureFixture, paths: tuple[str, ...]
) -> None:
    caplog.set_level("INFO")
    # socketio_path of each tab in turn: tabs alternate between the configured paths.
    tab_paths = itertools.cycle(path.strip("/") for path in paths)
    client = ingest.client()
    await client.set_analytics("auction-on", True)
    await client.set_analytics("auction-off", False)
    config = gateway_config(tmp_path, ingest_target=ingest.target, socketio_paths=paths)
    async with running_gateway(config, ManualClock(ingest.clock)) as gateway:
        # Open the live view: 1 watching.
        first_tab = await gateway.viewer(
            {"auctionId": "auction-on", "viewerId": "v1"}, socketio_path=next(tab_paths)
        )
        assert (await first_tab.wait_for(1))["auctionId"] == "auction-on"
        # A second tab: 2 watching, in both tabs.
        second_tab = await gateway.viewer(
            {"auctionId": "auction-on", "viewerId": "v1"}, socketio_path=next(tab_paths)
        )
        await second_tab.wait_for(2)
        await first_tab.wait_for(2)
        # Close one: 1 watching.
        await second_tab.disconnect()
        await first_tab.wait_for(1)

        other = await gateway.viewer({"auctionId": "auction-off"}, socketio_path=next(tab_paths))
        await other.wait_for(1)

        # After a minute, a snapshot is stored for the auction with analytics on, not for the other.
        await gateway.step(60)
        await gateway.delivered()

        stored = stored_snapshots(ingest.config.sqlite_path, "auction-on")
        assert len(stored) == 1
        assert stored[0]["minute_start"] == int(ingest.clock.now) - 60
        assert stored[0]["viewer_count"] == 1
        assert stored[0]["unique_viewers"] == 1
        assert stored[0]["sample_count"] == 12
        assert stored[0]["partial"] == 0
        assert stored_snapshots(ingest.config.sqlite_path, "auction-off") == []

        sent = [record for record in caplog.records if record.getMessage() == "Analytics sent"]
        assert sent, "each acknowledged batch is logged as 'Analytics sent'"
        assert sent[-1].__dict__["stored"] == 1
        assert sent[-1].__dict__["skipped_analytics_disabled"] == 1
        await first_tab.disconnect()
        await other.disconnect()
