"""A gateway and an ingest service that disagree on SNAPSHOT_INTERVAL_SECONDS: said, not silent.

A real gateway on a 10 s interval sends to a real ingest service on 60 s. The ingest service logs
each rejection's reason at WARNING; the gateway's ``/readyz`` says not ready, naming both values, and
``/metrics`` carries both intervals and the mismatch. A gateway that agrees stays ready.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from service_common.timing import SnapshotTiming
from socket_gateway.metrics import parse_samples
from tests.conftest import RunningIngest
from tests.gateway_support import ManualClock, gateway_config, running_gateway
from tests.support import FakeClock

MISMATCH = (
    "SNAPSHOT_INTERVAL_SECONDS differs: 10 on this gateway, 60 on the ingest service"
    " (its snapshots are rejected)"
)
REJECTION = "minute_start is not on a multiple of the 60-second snapshot interval"


async def test_a_gateway_on_another_interval_is_not_ready_and_says_why(
    ingest: RunningIngest, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await ingest.client().set_analytics("a1", True)
    config = gateway_config(tmp_path, ingest_target=ingest.target, timing=SnapshotTiming(10, 5))
    async with running_gateway(config, ManualClock(clock)) as gateway, aiohttp.ClientSession() as http:
        await gateway.viewer({"auctionId": "a1"})
        # Two 10 s intervals close: at most one of their starts is on a 60 s boundary.
        await gateway.step(20)
        await gateway.delivered()

        ready = await http.get(f"{gateway.url}/readyz")
        assert ready.status == 503
        assert MISMATCH in (await ready.json())["problems"]
        samples = parse_samples(await (await http.get(f"{gateway.url}/metrics")).text())
        assert samples["gateway_snapshot_interval_seconds"] == 10
        assert samples["gateway_ingest_snapshot_interval_seconds"] == 60
        assert samples["gateway_snapshot_interval_mismatch"] == 1
        assert samples['gateway_snapshots_acked_total{outcome="rejected"}'] >= 1

    rejections = [
        record
        for record in caplog.records
        if record.name == "ingest_service.ingestion" and record.levelno == logging.WARNING
    ]
    assert rejections, "no rejection was logged at WARNING"
    assert rejections[0].getMessage() == f"Viewer snapshots rejected: {REJECTION}"
    assert rejections[0].reason == REJECTION  # type: ignore[attr-defined]
    assert rejections[0].first_auction_id == "a1"  # type: ignore[attr-defined]
    told = [
        record.getMessage()
        for record in caplog.records
        if record.name == "socket_gateway.snapshots.sender" and record.levelno == logging.WARNING
    ]
    assert told == [f"Snapshot interval mismatch: {MISMATCH}"]


async def test_a_gateway_on_the_same_interval_stays_ready(
    ingest: RunningIngest, tmp_path: Path, clock: FakeClock
) -> None:
    await ingest.client().set_analytics("a1", True)
    config = gateway_config(tmp_path, ingest_target=ingest.target)
    async with running_gateway(config, ManualClock(clock)) as gateway, aiohttp.ClientSession() as http:
        await gateway.viewer({"auctionId": "a1"})
        await gateway.step(60)
        await gateway.delivered()
        ready = await http.get(f"{gateway.url}/readyz")
        assert ready.status == 200, await ready.text()
        samples = parse_samples(await (await http.get(f"{gateway.url}/metrics")).text())
        assert samples["gateway_ingest_snapshot_interval_seconds"] == 60
        assert samples["gateway_snapshot_interval_mismatch"] == 0
        assert samples['gateway_snapshots_acked_total{outcome="stored"}'] == 1
