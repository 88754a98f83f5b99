"""Issue 17's benchmark: an 8-hour auction with 500 lots, 10,000 distinct viewers and 50,000 bids.

Run from the repository root (figures and their meaning: docs/benchmarks.md, "Auction audience")::

    .venv/bin/python -m bench.auction_audience               # the issue's sizes
    .venv/bin/python -m bench.auction_audience --lots 50 --bids 5000 --hours 1   # a quick look

One run, against ``python -m ingest_service`` started afresh on a new SQLite file in a temporary
directory (unpinned: the machine is shared), through its real gRPC API with the internal key:

1. **Snapshot path**: the auction's minutes (12 samples each, identified and anonymous CPC sketches
   of the viewers watching) plus the same minutes for ``--other-auctions`` more auctions, in batches
   of 500 on one ``StreamSnapshots`` stream, as a gateway sends them: snapshots per second.
2. **Events**: the auction's ``auction_started``, ``lot_opened`` / ``lot_closed`` per lot, the bids and
   ``auction_ended``, oldest first, in batches of ``--batch`` through ``RecordAuctionEvents``: events
   per second. Every acknowledgement must be STORED, or the run fails.
3. **Queries**: ``--queries`` rounds, each timing ``QueryViewerAnalytics`` over the auction's 8 hours
   at 60 s buckets (the plain analytics query: what the dashboard's AUTO asks for 8 hours),
   ``QueryLotAudience`` and ``QueryAuctionFunnel`` over the same range, interleaved so that drift on
   the machine touches them alike; p50 and p95 (nearest rank) of each, and each p95 against the
   plain query's.
4. **Storage**: the bytes that samples and sketches add to a stored snapshot, read from the SQLite
   file afterwards (the three columns, and the hourly sketch rollups per snapshot).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasketches
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_audience_service_pb2_grpc as audience_grpc
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2
from viewer_analytics.v1 import auction_event_service_pb2_grpc as events_grpc
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2
from viewer_analytics.v1 import auction_settings_service_pb2_grpc as settings_grpc
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import snapshot_ingest_service_pb2_grpc as ingest_grpc
from viewer_analytics.v1 import viewer_analytics_service_pb2 as analytics_pb2
from viewer_analytics.v1 import viewer_analytics_service_pb2_grpc as analytics_grpc
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from bench.ingest_process import IngestProcess
from service_common.internal_auth import internal_key_metadata
from testkit.stats import percentile

E = events_pb2
MINUTE = 60
SNAPSHOT_BATCH = 500
# Watching at once: a window of the viewer ids that slides by VIEWER_STEP ids a minute, so that over
# the auction every one of the distinct viewers watches for a while.
WATCHING = 1500
# One viewer in four is signed in (sketched by the token's sub), the rest anonymous.
IDENTIFIED_EVERY = 4
STORED = E.AUCTION_EVENT_OUTCOME_STORED


@dataclass(frozen=True)
class Options:
    hours: int = 8
    lots: int = 500
    viewers: int = 10_000
    bids: int = 50_000
    other_auctions: int = 20
    batch: int = 1000
    queries: int = 30
    seed: int = 17


@dataclass(frozen=True)
class Result:
    snapshots: int
    snapshot_seconds: float
    events: int
    event_seconds: float
    latencies: dict[str, list[float]]
    bytes_per_snapshot: float
    max_bytes_per_snapshot: int
    rollup_bytes_per_snapshot: float
    lots_answered: int
    unique_viewers: float

    @property
    def snapshots_per_second(self) -> float:
        return self.snapshots / self.snapshot_seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.event_seconds


def ts(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))


def minute_snapshots(
    auction_id: str, first_minute: int, options: Options
) -> list[snapshot_pb2.ViewerSnapshot]:
    """The auction's minutes: 12 samples each, and sketches of the viewers watching that minute."""
    minutes = options.hours * 60
    step = max(1, (options.viewers - WATCHING) // max(1, minutes - 1) + 1)
    rng = random.Random(options.seed)
    snapshots = []
    for index in range(minutes):
        identified = datasketches.cpc_sketch(11)
        anonymous = datasketches.cpc_sketch(11)
        watching = min(WATCHING, options.viewers)
        for offset in range(watching):
            number = (index * step + offset) % options.viewers
            if number % IDENTIFIED_EVERY == 0:
                identified.update(f"sub-{number}")
            else:
                anonymous.update(f"anon-{number}")
        samples = [max(1, watching - rng.randrange(0, 200)) for _ in range(12)]
        snapshots.append(
            snapshot_pb2.ViewerSnapshot(
                auction_id=auction_id,
                minute_start=Timestamp(seconds=first_minute + MINUTE * index),
                viewer_count=samples[-1],
                avg_viewers=sum(samples) / 12,
                peak_viewers=max(samples),
                min_viewers=min(samples),
                sample_count=12,
                unique_viewers=min(samples[-1], watching),
                partial=False,
                gateway_id="bench-gateway",
                samples=samples,
                identified_viewer_sketch=bytes(identified.serialize()),
                anonymous_viewer_sketch=bytes(anonymous.serialize()),
            )
        )
    return snapshots


def auction_events(auction_id: str, start: int, options: Options) -> list[events_pb2.AuctionEvent]:
    """The auction's events, oldest first: lots one after another, bids spread over them."""
    rng = random.Random(options.seed)
    span = options.hours * 3600
    lot_span = span / options.lots
    events = [
        E.AuctionEvent(
            event_id="e-start",
            auction_id=auction_id,
            occurred_at=ts(start + 1),
            auction_started=E.AuctionStarted(),
        )
    ]
    bidders = [f"sub-{n}" for n in range(0, options.viewers, IDENTIFIED_EVERY)]
    bids_per_lot = options.bids // options.lots
    extra = options.bids - bids_per_lot * options.lots
    for lot in range(options.lots):
        opened = start + 2 + lot * lot_span
        closed = opened + lot_span * 0.9
        lot_id = f"lot-{lot + 1}"
        opening = E.LotOpened(lot_id=lot_id, title=f"Lot {lot + 1}")
        events.append(
            E.AuctionEvent(
                event_id=f"e-open-{lot}", auction_id=auction_id, occurred_at=ts(opened), lot_opened=opening
            )
        )
        count = bids_per_lot + (1 if lot < extra else 0)
        last = ""
        for number in range(count):
            last = rng.choice(bidders)
            at = opened + (number + 1) * (closed - opened) / (count + 1)
            events.append(E.AuctionEvent(
                event_id=f"e-bid-{lot}-{number}", auction_id=auction_id, occurred_at=ts(at),
                bid_placed=E.BidPlaced(lot_id=lot_id, bidder_id=last, amount=10_000 + 100 * number,
                                       currency="EUR", channel=E.BID_CHANNEL_ONLINE)))  # fmt: skip
        close = (
            E.LotClosed(lot_id=lot_id, outcome=E.LOT_OUTCOME_SOLD, hammer_price=10_000 + 100 * (count - 1),
                        currency="EUR", winner_bidder_id=last)
            if count else E.LotClosed(lot_id=lot_id, outcome=E.LOT_OUTCOME_PASSED)
        )  # fmt: skip
        events.append(
            E.AuctionEvent(
                event_id=f"e-close-{lot}", auction_id=auction_id, occurred_at=ts(closed), lot_closed=close
            )
        )
    events.append(
        E.AuctionEvent(
            event_id="e-end",
            auction_id=auction_id,
            occurred_at=ts(start + span - 1),
            auction_ended=E.AuctionEnded(),
        )
    )
    return events


async def run(options: Options) -> Result:
    key = secrets.token_urlsafe(32)
    metadata = internal_key_metadata(key)
    now_minute = int(time.time()) // MINUTE * MINUTE
    start = now_minute - options.hours * 3600
    auction_id = "bench-auction"
    others = [f"bench-other-{n}" for n in range(options.other_auctions)]
    print(f"building {options.hours * 60} minutes of samples and sketches...", flush=True)
    minutes = minute_snapshots(auction_id, start, options)
    snapshots = list(minutes)
    for other in others:
        for minute in minutes:
            copy = snapshot_pb2.ViewerSnapshot()
            copy.CopyFrom(minute)
            copy.auction_id = other
            snapshots.append(copy)
    events = auction_events(auction_id, start, options)
    with tempfile.TemporaryDirectory(prefix="bench-audience-") as directory:
        path = Path(directory) / "audience.sqlite3"
        settings = {
            "INTERNAL_API_KEY": key,
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
            "ANALYTICS_SQLITE_PATH": str(path),
            "SNAPSHOT_INTERVAL_SECONDS": "60",
            "SAMPLE_INTERVAL_SECONDS": "5",
        }
        async with (
            IngestProcess(settings, Path(directory) / "ingest.log", None) as service,
            grpc.aio.insecure_channel(service.target) as channel,
        ):
            settings_stub = settings_grpc.AuctionSettingsServiceStub(channel)
            for each in [auction_id, *others]:
                await settings_stub.SetViewerAnalytics(
                    settings_pb2.SetViewerAnalyticsRequest(auction_id=each, enabled=True), metadata=metadata
                )
            print(f"sending {len(snapshots)} snapshots in batches of {SNAPSHOT_BATCH}...", flush=True)
            snapshot_seconds = await send_snapshots(channel, metadata, snapshots)
            print(f"sending {len(events)} events in batches of {options.batch}...", flush=True)
            event_seconds = await send_events(channel, metadata, events, options.batch)
            print(f"timing {options.queries} rounds of queries...", flush=True)
            latencies, lots_answered, unique = await time_queries(
                channel, metadata, auction_id, start, options
            )
        bytes_each, most, rollup_each = stored_bytes(path, auction_id)
    return Result(
        snapshots=len(snapshots),
        snapshot_seconds=snapshot_seconds,
        events=len(events),
        event_seconds=event_seconds,
        latencies=latencies,
        bytes_per_snapshot=bytes_each,
        max_bytes_per_snapshot=most,
        rollup_bytes_per_snapshot=rollup_each,
        lots_answered=lots_answered,
        unique_viewers=unique,
    )


async def send_snapshots(
    channel: grpc.aio.Channel,
    metadata: Sequence[tuple[str, str]],
    snapshots: list[snapshot_pb2.ViewerSnapshot],
) -> float:
    call = ingest_grpc.SnapshotIngestServiceStub(channel).StreamSnapshots(metadata=metadata)
    began = time.perf_counter()
    for at in range(0, len(snapshots), SNAPSHOT_BATCH):
        await call.write(ingest_pb2.StreamSnapshotsRequest(snapshots=snapshots[at : at + SNAPSHOT_BATCH]))
        response = await call.read()
        assert response is not grpc.aio.EOF, "the stream ended early"
        stored = [ack for ack in response.acks if ack.outcome == ingest_pb2.SNAPSHOT_OUTCOME_STORED]
        if len(stored) != len(response.acks):
            raise RuntimeError(f"snapshots not stored: {[a for a in response.acks if a not in stored][:3]}")
    seconds = time.perf_counter() - began
    await call.done_writing()
    return seconds


async def send_events(
    channel: grpc.aio.Channel,
    metadata: Sequence[tuple[str, str]],
    events: list[events_pb2.AuctionEvent],
    batch: int,
) -> float:
    stub = events_grpc.AuctionEventServiceStub(channel)
    began = time.perf_counter()
    for at in range(0, len(events), batch):
        response = await stub.RecordAuctionEvents(
            E.RecordAuctionEventsRequest(events=events[at : at + batch]), metadata=metadata
        )
        refused = [ack for ack in response.acks if ack.outcome != STORED]
        if refused:
            raise RuntimeError(f"events not stored: {refused[:3]}")
    return time.perf_counter() - began


async def time_queries(
    channel: grpc.aio.Channel,
    metadata: Sequence[tuple[str, str]],
    auction_id: str,
    start: int,
    options: Options,
) -> tuple[dict[str, list[float]], int, float]:
    end = start + options.hours * 3600
    analytics = analytics_grpc.ViewerAnalyticsServiceStub(channel)
    audience = audience_grpc.AuctionAudienceServiceStub(channel)
    bounds = {"from": ts(start), "to": ts(end)}
    plain = analytics_pb2.QueryViewerAnalyticsRequest(auction_id=auction_id, bucket_seconds=60, **bounds)  # type: ignore[arg-type]
    lots = audience_pb2.QueryLotAudienceRequest(auction_id=auction_id, **bounds)
    funnel = audience_pb2.QueryAuctionFunnelRequest(auction_id=auction_id, **bounds)
    latencies: dict[str, list[float]] = {"analytics": [], "lots": [], "funnel": []}
    lots_answered = 0
    unique = 0.0
    for round_number in range(options.queries + 1):  # the first round warms up, untimed
        began = time.perf_counter()
        await analytics.QueryViewerAnalytics(plain, metadata=metadata)
        plain_seconds = time.perf_counter() - began
        began = time.perf_counter()
        answer = await audience.QueryLotAudience(lots, metadata=metadata)
        lot_seconds = time.perf_counter() - began
        began = time.perf_counter()
        funnel_answer = await audience.QueryAuctionFunnel(funnel, metadata=metadata)
        funnel_seconds = time.perf_counter() - began
        lots_answered = len(answer.lots)
        unique = funnel_answer.unique_viewers.estimate
        if round_number:
            latencies["analytics"].append(plain_seconds)
            latencies["lots"].append(lot_seconds)
            latencies["funnel"].append(funnel_seconds)
    return latencies, lots_answered, unique


def stored_bytes(path: Path, auction_id: str) -> tuple[float, int, float]:
    """Mean and largest bytes of samples and sketches per stored snapshot, and rollup bytes per snapshot."""
    with sqlite3.connect(path) as connection:
        mean, most, count = connection.execute(
            "SELECT AVG(b), MAX(b), COUNT(*) FROM (SELECT IFNULL(LENGTH(samples), 0) + "
            "IFNULL(LENGTH(identified_sketch), 0) + IFNULL(LENGTH(anonymous_sketch), 0) AS b "
            "FROM viewer_snapshots WHERE auction_id = ?)",
            (auction_id,),
        ).fetchone()
        rollups = connection.execute(
            "SELECT TOTAL(IFNULL(LENGTH(identified_sketch), 0) + IFNULL(LENGTH(anonymous_sketch), 0)) "
            "FROM viewer_hourly_sketches WHERE auction_id = ?",
            (auction_id,),
        ).fetchone()[0]
    return float(mean or 0), int(most or 0), rollups / count if count else 0.0


def report(options: Options, result: Result) -> str:
    p95 = {name: percentile(values, 0.95) for name, values in result.latencies.items()}
    p50 = {name: statistics.median(values) for name, values in result.latencies.items()}
    lines = [
        f"{options.hours} h auction, {options.lots} lots, {options.viewers} distinct viewers, "
        f"{options.bids} bids "
        f"({result.lots_answered} lots answered; funnel unique viewers {result.unique_viewers:.0f})",
        "",
        "| path | rate |",
        "|---|---|",
        f"| snapshots, batches of {SNAPSHOT_BATCH} | {result.snapshots_per_second:,.0f}/s "
        f"({result.snapshots} in {result.snapshot_seconds:.2f} s) |",
        f"| events, batches of {options.batch} | {result.events_per_second:,.0f}/s "
        f"({result.events} in {result.event_seconds:.2f} s) |",
        "",
        "| query (8 h range) | p50 | p95 | p95 / plain p95 |",
        "|---|---|---|---|",
    ]
    for name, label in (
        ("analytics", "plain analytics (60 s buckets)"),
        ("lots", "per-lot (QueryLotAudience)"),
        ("funnel", "funnel (QueryAuctionFunnel)"),
    ):
        lines.append(
            f"| {label} | {p50[name] * 1000:.1f} ms | {p95[name] * 1000:.1f} ms "
            f"| {p95[name] / p95['analytics']:.2f}x |"
        )
    lines += [
        "",
        f"storage added per snapshot by samples and sketches: mean {result.bytes_per_snapshot:.0f} B, "
        f"largest {result.max_bytes_per_snapshot} B; hourly sketch rollups "
        f"{result.rollup_bytes_per_snapshot:.0f} B per snapshot",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = Options()
    for name in ("hours", "lots", "viewers", "bids", "other_auctions", "batch", "queries", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    arguments = parser.parse_args(argv)
    options = Options(**{name: getattr(arguments, name) for name in vars(arguments)})
    result = asyncio.run(run(options))
    print(report(options, result))


if __name__ == "__main__":
    main()
