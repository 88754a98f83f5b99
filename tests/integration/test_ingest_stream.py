"""The snapshot stream: validation, the analytics flag, idempotency, concurrency, bad messages."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2

from ingest_service.domain import Snapshot
from service_common.internal_auth import internal_key_metadata
from service_common.viewer_snapshot import to_wire
from tests.conftest import RunningIngest
from tests.support import TEST_KEY, make_snapshot, outcome_names

STREAM_METHOD = "/viewer_analytics.v1.SnapshotIngestService/StreamSnapshots"


def minute_ago(ingest: RunningIngest, minutes: int = 1) -> int:
    return int(ingest.clock.now) - 60 * minutes


async def test_enabled_auction_is_stored_and_acked_in_order(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("on", True)
    batch = [make_snapshot("on", minute_ago(ingest, m)) for m in (3, 2, 1)]
    acks = await client.send(batch)
    assert outcome_names(acks) == ["STORED"] * 3
    assert [(ack.auction_id, ack.minute_start.seconds) for ack in acks] == [
        ("on", snapshot.minute_start) for snapshot in batch
    ]
    assert await ingest.stored_count("on") == 3


async def test_each_batch_is_logged_with_counts_per_outcome(
    ingest: RunningIngest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest_service.ingestion")
    client = ingest.client()
    await client.set_analytics("logged", True)
    stored = make_snapshot("logged", minute_ago(ingest))
    await client.send([stored])
    caplog.clear()
    await client.send([stored, make_snapshot("not-enabled", minute_ago(ingest)), make_snapshot("", 0)])
    [line] = [record for record in caplog.records if record.getMessage() == "Viewer snapshot saved"]
    fields = {k: getattr(line, k) for k in ("received", "stored", "duplicate", "skipped_analytics_disabled")}
    assert fields == {"received": 3, "stored": 0, "duplicate": 1, "skipped_analytics_disabled": 1}
    assert line.rejected == 1  # type: ignore[attr-defined]
    # The reason is not on the INFO line: rejections have a WARNING line of their own.
    [rejected] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert rejected.getMessage() == "Viewer snapshots rejected: auction id is empty"
    assert (rejected.rejected, rejected.reason) == (1, "auction id is empty")  # type: ignore[attr-defined]


async def test_disabled_and_unknown_auctions_are_acknowledged_not_stored(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("off", False)
    await client.set_analytics("on", True)
    at = minute_ago(ingest)
    acks = await client.send(
        [make_snapshot("off", at), make_snapshot("never-configured", at), make_snapshot("on", at)]
    )
    assert outcome_names(acks) == ["SKIPPED_ANALYTICS_DISABLED", "SKIPPED_ANALYTICS_DISABLED", "STORED"]
    assert [await ingest.stored_count(a) for a in ("off", "never-configured", "on")] == [0, 0, 1]


async def test_toggling_the_flag_takes_effect_for_the_next_snapshot(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("toggled", True)
    assert outcome_names(await client.send([make_snapshot("toggled", minute_ago(ingest, 3))])) == ["STORED"]
    await client.set_analytics("toggled", False)
    skipped = await client.send([make_snapshot("toggled", minute_ago(ingest, 2))])
    assert outcome_names(skipped) == ["SKIPPED_ANALYTICS_DISABLED"]
    await client.set_analytics("toggled", True)
    assert outcome_names(await client.send([make_snapshot("toggled", minute_ago(ingest, 1))])) == ["STORED"]
    assert await ingest.stored_count("toggled") == 2


async def test_resending_is_idempotent(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("dup", True)
    snapshot = make_snapshot("dup", minute_ago(ingest))
    first, second = await client.send_batches([[snapshot], [snapshot, snapshot]])
    assert outcome_names(first) == ["STORED"]
    assert outcome_names(second) == ["DUPLICATE", "DUPLICATE"]
    # Also across streams, as after a gateway reconnects.
    assert outcome_names(await client.send([snapshot])) == ["DUPLICATE"]
    assert await ingest.stored_count("dup") == 1


async def test_two_concurrent_streams_store_each_minute_once(ingest: RunningIngest) -> None:
    client = ingest.client()
    auctions = [f"concurrent-{n}" for n in range(4)]
    for auction in auctions:
        await client.set_analytics(auction, True)
    snapshots = [make_snapshot(a, minute_ago(ingest, m)) for a in auctions for m in range(1, 51)]
    # Both streams send everything, in opposite orders, in batches of 20.
    forward = [snapshots[i : i + 20] for i in range(0, len(snapshots), 20)]
    backward = [snapshots[::-1][i : i + 20] for i in range(0, len(snapshots), 20)]
    first, second = await asyncio.gather(client.send_batches(forward), client.send_batches(backward))
    outcomes = [name for acks in first + second for name in outcome_names(acks)]
    assert outcomes.count("STORED") == len(snapshots)
    assert outcomes.count("DUPLICATE") == len(snapshots)
    assert [await ingest.stored_count(a) for a in auctions] == [50] * 4


VALIDATION_CASES: list[tuple[str, Callable[[Snapshot], dict[str, object]], str]] = [
    ("empty auction id", lambda s: {"auction_id": ""}, "auction id is empty"),
    ("long auction id", lambda s: {"auction_id": "a" * 129}, "longer than 128"),
    ("auction id charset", lambda s: {"auction_id": "a b"}, "may hold only"),
    ("injection-looking id", lambda s: {"auction_id": '{"$gt": ""}'}, "may hold only"),
    ("off the minute", lambda s: {"minute_start": s.minute_start + 30}, "not on a multiple"),
    ("far future", lambda s: {"minute_start": s.minute_start + 60 * 4}, "in the future"),
    (
        "older than retention",
        lambda s: {"minute_start": s.minute_start - 91 * 86_400},
        "older than the retention",
    ),
    ("no samples", lambda s: {"sample_count": 0}, "sample_count must be between 1 and 12"),
    ("too many samples", lambda s: {"sample_count": 13}, "sample_count must be between 1 and 12"),
    ("min above avg", lambda s: {"min_viewers": 7}, "min_viewers <= avg_viewers <= peak_viewers"),
    ("avg above peak", lambda s: {"avg_viewers": 9.5}, "min_viewers <= avg_viewers <= peak_viewers"),
    ("avg not a number", lambda s: {"avg_viewers": math.nan}, "not a finite number"),
    ("avg infinite", lambda s: {"avg_viewers": math.inf, "peak_viewers": 10}, "not a finite number"),
    ("count below min", lambda s: {"viewer_count": 2}, "viewer_count must lie between"),
    ("count above peak", lambda s: {"viewer_count": 10}, "viewer_count must lie between"),
    ("unique above count", lambda s: {"unique_viewers": 6}, "unique_viewers cannot exceed"),
    ("huge counts", lambda s: {"peak_viewers": 20_000_000}, "must not exceed"),
    ("long gateway id", lambda s: {"gateway_id": "g" * 129}, "gateway_id is longer"),
]


@pytest.mark.parametrize(
    ("change", "expected_detail"),
    [case[1:] for case in VALIDATION_CASES],
    ids=[case[0] for case in VALIDATION_CASES],
)
async def test_each_invalid_snapshot_is_rejected_and_the_rest_go_on(
    ingest: RunningIngest, change: Callable[[Snapshot], dict[str, object]], expected_detail: str
) -> None:
    client = ingest.client()
    await client.set_analytics("valid", True)
    valid_before = make_snapshot("valid", minute_ago(ingest, 2))
    base = make_snapshot("valid", minute_ago(ingest, 1))
    invalid = to_wire(base)
    for field, value in change(base).items():
        if field == "minute_start":
            invalid.minute_start.CopyFrom(Timestamp(seconds=int(value)))  # type: ignore[call-overload]
        else:
            setattr(invalid, field, value)
    valid_after = make_snapshot("valid", minute_ago(ingest, 0))

    acks = await client.send([valid_before, invalid, valid_after])
    assert outcome_names(acks) == ["STORED", "REJECTED", "STORED"]
    assert expected_detail in acks[1].detail
    assert acks[0].detail == acks[2].detail == ""
    assert await ingest.stored_count("valid") == 2


async def test_timestamps_missing_or_with_fractions_are_rejected(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("ts", True)
    missing = to_wire(make_snapshot("ts", minute_ago(ingest)))
    missing.ClearField("minute_start")
    fractional = to_wire(make_snapshot("ts", minute_ago(ingest)))
    fractional.minute_start.nanos = 5
    acks = await client.send([missing, fractional])
    assert outcome_names(acks) == ["REJECTED", "REJECTED"]
    assert "missing" in acks[0].detail
    assert "whole second" in acks[1].detail
    assert await ingest.stored_count("ts") == 0


async def test_an_interval_may_start_up_to_two_intervals_ahead(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("clock-skew", True)
    now = int(ingest.clock.now)
    acks = await client.send([make_snapshot("clock-skew", now + 120), make_snapshot("clock-skew", now + 180)])
    assert outcome_names(acks) == ["STORED", "REJECTED"]


async def test_an_empty_batch_gets_an_empty_answer(ingest: RunningIngest) -> None:
    assert await ingest.client().send([]) == []


async def _raw_stream(ingest: RunningIngest, payload: bytes) -> grpc.aio.AioRpcError:
    call = ingest.channel.stream_stream(STREAM_METHOD)(metadata=internal_key_metadata(TEST_KEY))
    await call.write(payload)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call.read()
    return failure.value


async def test_a_malformed_message_fails_the_stream_and_the_server_stays_up(ingest: RunningIngest) -> None:
    error = await _raw_stream(ingest, b"\xff\xff\xff\xff not a protobuf")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.details() == "malformed StreamSnapshotsRequest"
    # The server still answers on a new stream.
    client = ingest.client()
    await client.set_analytics("after", True)
    assert outcome_names(await client.send([make_snapshot("after", minute_ago(ingest))])) == ["STORED"]


async def test_an_oversized_message_is_refused_and_the_server_stays_up(ingest: RunningIngest) -> None:
    message = ingest_pb2.StreamSnapshotsRequest(
        snapshots=[to_wire(make_snapshot("big", minute_ago(ingest), gateway_id="g" * 1000))] * 5000
    ).SerializeToString()
    assert len(message) > ingest.config.max_message_bytes
    error = await _raw_stream(ingest, message)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await ingest.client().send([]) == []
