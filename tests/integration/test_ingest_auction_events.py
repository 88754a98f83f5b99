"""Auction events through the real ingest service (port 0, a real gRPC channel), viewers against them."""

from __future__ import annotations

import datasketches
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import auction_audience_service_pb2 as audience_pb2
from viewer_analytics.v1 import auction_audience_service_pb2_grpc as audience_grpc
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2
from viewer_analytics.v1 import auction_event_service_pb2_grpc as events_grpc

from service_common.viewer_sketches import IntervalSketches, merge_serialized
from tests.conftest import RunningIngest
from tests.support import IngestClient, make_snapshot

E = events_pb2
STORED = E.AUCTION_EVENT_OUTCOME_STORED
DUPLICATE = E.AUCTION_EVENT_OUTCOME_DUPLICATE
SKIPPED = E.AUCTION_EVENT_OUTCOME_SKIPPED_ANALYTICS_DISABLED
REJECTED = E.AUCTION_EVENT_OUTCOME_REJECTED
SAMPLES = audience_pb2.VIEWER_RESOLUTION_SAMPLES
MINUTES = audience_pb2.VIEWER_RESOLUTION_MINUTES
NONE = audience_pb2.VIEWER_RESOLUTION_NONE


def ts(seconds: float) -> Timestamp:
    whole = int(seconds)
    return Timestamp(seconds=whole, nanos=round((seconds - whole) * 1e9))


def opened(event_id: str, at: float, lot: str, title: str = "", auction: str = "a-1") -> E.AuctionEvent:
    return E.AuctionEvent(
        event_id=event_id,
        auction_id=auction,
        occurred_at=ts(at),
        lot_opened=E.LotOpened(lot_id=lot, title=title),
    )


def closed(
    event_id: str, at: float, lot: str, outcome: int, auction: str = "a-1", **sold: object
) -> E.AuctionEvent:
    return E.AuctionEvent(
        event_id=event_id,
        auction_id=auction,
        occurred_at=ts(at),
        lot_closed=E.LotClosed(lot_id=lot, outcome=outcome, **sold),  # type: ignore[arg-type]
    )


def bid(
    event_id: str, at: float, lot: str, bidder: str, amount: int = 1000, auction: str = "a-1"
) -> E.AuctionEvent:
    return E.AuctionEvent(
        event_id=event_id,
        auction_id=auction,
        occurred_at=ts(at),
        bid_placed=E.BidPlaced(
            lot_id=lot, bidder_id=bidder, amount=amount, currency="EUR", channel=E.BID_CHANNEL_ONLINE
        ),
    )


async def record(client: IngestClient, *events: E.AuctionEvent) -> list[E.AuctionEventAck]:
    stub = events_grpc.AuctionEventServiceStub(client.channel)
    response = await stub.RecordAuctionEvents(
        E.RecordAuctionEventsRequest(events=list(events)), metadata=client.metadata
    )
    return list(response.acks)


def audience(client: IngestClient) -> audience_grpc.AuctionAudienceServiceStub:
    return audience_grpc.AuctionAudienceServiceStub(client.channel)


def cpc(names: range, prefix: str) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for number in names:
        sketch.update(f"{prefix}{number}")
    return bytes(sketch.serialize())


async def test_events_need_the_internal_key(ingest: RunningIngest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await record(ingest.client(key=None), bid("e-1", ingest.clock.now, "lot-1", "b-1"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as refused_query:
        await audience(ingest.client(key="wrong")).QueryLotAudience(
            audience_pb2.QueryLotAudienceRequest(auction_id="a-1")
        )
    assert refused_query.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_each_event_is_stored_duplicate_skipped_or_rejected_with_its_reason(
    ingest: RunningIngest,
) -> None:
    client = ingest.client()
    await client.set_analytics("a-1", True)
    now = ingest.clock.now
    no_kind = E.AuctionEvent(event_id="e-none", auction_id="a-1", occurred_at=ts(now))
    no_time = E.AuctionEvent(event_id="e-notime", auction_id="a-1", bid_placed=E.BidPlaced(lot_id="l"))
    bad_currency = bid("e-cur", now, "lot-1", "b-1")
    bad_currency.bid_placed.currency = "eur"
    sold_without_winner = closed(
        "e-sold", now, "lot-1", E.LOT_OUTCOME_SOLD, hammer_price=5000, currency="EUR"
    )
    acks = await record(
        client,
        bid("e-1", now - 10, "lot-1", "b-1"),
        bid("e-off", now - 10, "lot-1", "b-1", auction="a-off"),  # analytics never enabled
        bid("e-zero", now, "lot-1", "b-1", amount=0),
        bad_currency,
        no_kind,
        no_time,
        sold_without_winner,
        closed("e-unspecified", now, "lot-1", E.LOT_OUTCOME_UNSPECIFIED),
        bid("e-old", now - 91 * 86_400, "lot-1", "b-1"),
        bid("e-future", now + 3600, "lot-1", "b-1"),
        opened("", now, "lot-1"),
    )
    assert [(ack.event_id, ack.outcome) for ack in acks] == [
        ("e-1", STORED),
        ("e-off", SKIPPED),
        ("e-zero", REJECTED),
        ("e-cur", REJECTED),
        ("e-none", REJECTED),
        ("e-notime", REJECTED),
        ("e-sold", REJECTED),
        ("e-unspecified", REJECTED),
        ("e-old", REJECTED),
        ("e-future", REJECTED),
        ("", REJECTED),
    ]
    assert [ack.detail for ack in acks[2:]] == [
        "amount must be between 1 and 9007199254740992 minor units",
        "currency must be an ISO 4217 code: three upper-case letters",
        "the event has no kind (auction_started ... bid_placed)",
        "occurred_at is missing",
        "winner_bidder_id of a SOLD lot is missing",
        "lot_closed.outcome must be SOLD, PASSED or WITHDRAWN",
        "occurred_at is older than the retention period",
        "occurred_at is more than 120 seconds in the future",
        "event_id is missing",
    ]
    assert acks[0].detail == acks[1].detail == ""

    # Re-sent (a retry after a lost answer): DUPLICATE, and counted once.
    again = await record(client, bid("e-1", now - 10, "lot-1", "b-1"), bid("e-2", now - 5, "lot-1", "b-2"))
    assert [ack.outcome for ack in again] == [DUPLICATE, STORED]
    funnel = await audience(client).QueryAuctionFunnel(
        audience_pb2.QueryAuctionFunnelRequest(auction_id="a-1"), metadata=client.metadata
    )
    assert (funnel.bids, funnel.bidders) == (2, 2)
    off = await audience(client).QueryAuctionFunnel(
        audience_pb2.QueryAuctionFunnelRequest(auction_id="a-off"), metadata=client.metadata
    )
    assert off.bids == 0


async def test_per_lot_audience_matches_hand_computed_values(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("a-1", True)
    m = int(ingest.clock.now) // 60 * 60 - 600
    # Minute m with its 5-second samples (taken at m+5 ... m+60); minute m+60 from an older gateway.
    samples = (10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32)
    with_samples = make_snapshot(
        "a-1",
        m,
        samples=samples,
        viewer_count=32,
        peak_viewers=32,
        min_viewers=10,
        avg_viewers=21.0,
        unique_viewers=30,
        identified_sketch=cpc(range(100), "sub-"),
        anonymous_sketch=cpc(range(50), "anon-"),
    )
    minutes_only = make_snapshot(
        "a-1",
        m + 60,
        viewer_count=35,
        peak_viewers=50,
        min_viewers=30,
        avg_viewers=40.0,
        unique_viewers=35,
        identified_sketch=cpc(range(50, 150), "sub-"),
    )
    acks = await client.send([with_samples, minutes_only])
    assert all(ack.outcome == 1 for ack in acks), acks

    assert all(
        ack.outcome == STORED
        for ack in await record(
            client,
            # Inside one minute: 19 s, from m+12 to m+31.
            opened("o-1", m + 12, "lot-1", "Tea bowl"),
            bid("b-1", m + 20, "lot-1", "alice"),
            bid("b-2", m + 25, "lot-1", "bob"),
            bid("b-3", m + 28, "lot-1", "alice"),
            closed("c-1", m + 31, "lot-1", E.LOT_OUTCOME_PASSED),
            # Across the minute boundary, into the minute without samples.
            opened("o-2", m + 50, "lot-2", "Screen"),
            bid("b-4", m + 55, "lot-2", "carol", amount=150_000),
            closed(
                "c-2",
                m + 70,
                "lot-2",
                E.LOT_OUTCOME_SOLD,
                hammer_price=150_000,
                currency="EUR",
                winner_bidder_id="carol",
            ),
            # No snapshot covers it: no viewers known.
            opened("o-3", m + 300, "lot-3"),
            closed("c-3", m + 310, "lot-3", E.LOT_OUTCOME_WITHDRAWN),
            # Never closed: it ends at its last bid.
            opened("o-4", m + 400, "lot-4"),
            bid("b-5", m + 420, "lot-4", "dave"),
        )
    )
    response = await audience(client).QueryLotAudience(
        audience_pb2.QueryLotAudienceRequest(auction_id="a-1"), metadata=client.metadata
    )
    rows = {lot.lot_id: lot for lot in response.lots}
    assert list(rows) == ["lot-1", "lot-2", "lot-3", "lot-4"]

    one = rows["lot-1"]
    # Open m+12: nearest sample m+10 (12). Close m+31: sample m+30 (20). Inside: m+15..m+30 = 14,16,18,20.
    assert (one.viewers_at_open, one.viewers_at_close, one.peak_viewers) == (12, 20, 20)
    assert one.avg_viewers == pytest.approx(17.0)
    assert (one.bids, one.bidders, one.resolution, one.outcome) == (3, 2, SAMPLES, E.LOT_OUTCOME_PASSED)
    assert (one.title, one.opened_at.seconds, one.closed_at.seconds) == ("Tea bowl", m + 12, m + 31)

    two = rows["lot-2"]
    # Open m+50: sample 28. Close m+70: 10 s past the last sample, in the minute without samples: its mean 40.
    # Inside: samples 28, 30, 32 and the sample-less minute (mean 40, peak 50).
    assert (two.viewers_at_open, two.viewers_at_close, two.peak_viewers) == (28, 40, 50)
    assert two.avg_viewers == pytest.approx((28 + 30 + 32 + 40) / 4)
    assert (two.bids, two.bidders, two.resolution) == (1, 1, MINUTES)
    assert (two.outcome, two.hammer_price, two.currency, two.winner_bidder_id) == (
        E.LOT_OUTCOME_SOLD,
        150_000,
        "EUR",
        "carol",
    )

    three = rows["lot-3"]
    assert (three.viewers_at_open, three.viewers_at_close, three.peak_viewers, three.resolution) == (
        0,
        0,
        0,
        NONE,
    )

    four = rows["lot-4"]
    assert not four.HasField("closed_at")
    assert four.outcome == E.LOT_OUTCOME_UNSPECIFIED
    assert (four.bids, four.bidders) == (1, 1)

    bids = await audience(client).QueryBidsAgainstViewers(
        audience_pb2.QueryBidsAgainstViewersRequest(auction_id="a-1", limit=4), metadata=client.metadata
    )
    # m+20: sample 16; m+25: sample 18; m+28: nearest m+30 (20); m+55: 30. The fifth is left out.
    assert [(b.event_id, b.viewers, b.resolution) for b in bids.bids] == [
        ("b-1", 16, SAMPLES),
        ("b-2", 18, SAMPLES),
        ("b-3", 20, SAMPLES),
        ("b-4", 30, SAMPLES),
    ]
    assert bids.truncated

    funnel = await audience(client).QueryAuctionFunnel(
        audience_pb2.QueryAuctionFunnelRequest(auction_id="a-1"), metadata=client.metadata
    )
    assert (funnel.bids, funnel.bidders, funnel.lots_sold, funnel.winners) == (5, 4, 1, 1)
    unique = funnel.unique_viewers
    # 150 identified (sub-0..149 over the two minutes) and 50 anonymous: 200 distinct.
    assert unique.lower_bound <= 200 <= unique.upper_bound
    assert unique.estimate == pytest.approx(200, rel=0.02)
    assert unique.identified_estimate == pytest.approx(150, rel=0.02)
    assert unique.anonymous_estimate == pytest.approx(50, rel=0.02)
    assert (unique.sketched_snapshots, unique.unsketched_snapshots) == (2, 0)

    # Lots opened in a range: only lot-2 opened in [m+40, m+200).
    ranged = await audience(client).QueryLotAudience(
        audience_pb2.QueryLotAudienceRequest(auction_id="a-1", to=ts(m + 200), **{"from": ts(m + 40)}),
        metadata=client.metadata,
    )
    assert [lot.lot_id for lot in ranged.lots] == ["lot-2"]


async def test_unique_viewers_merged_over_minutes_are_within_two_percent_at_ten_thousand(
    ingest: RunningIngest,
) -> None:
    """10,000 distinct viewers over 20 minutes, each minute seeing 1,000 of them (half of them new).

    Three in ten are identified (sketched by ``sub``), the others anonymous; each is one or the other.
    """
    client = ingest.client()
    await client.set_analytics("a-1", True)
    m = int(ingest.clock.now) // 60 * 60 - 30 * 60
    everyone: set[str] = set()
    snapshots = []
    for minute in range(20):
        seen = range(max(0, 500 * minute - 500), 500 * minute + 500)
        identified = datasketches.cpc_sketch(11)
        anonymous = datasketches.cpc_sketch(11)
        for viewer in seen:
            name = f"sub-{viewer}" if viewer % 10 < 3 else f"anon-{viewer}"
            (identified if viewer % 10 < 3 else anonymous).update(name)
            everyone.add(name)
        snapshots.append(
            make_snapshot(
                "a-1",
                m + 60 * minute,
                identified_sketch=bytes(identified.serialize()),
                anonymous_sketch=bytes(anonymous.serialize()),
            )
        )
    # A snapshot without sketches (an older gateway, the seed's documents) is counted apart, never guessed at.
    snapshots.append(make_snapshot("a-1", m + 60 * 25))
    assert all(ack.outcome == 1 for ack in await client.send(snapshots))
    assert len(everyone) == 10_000
    response = await audience(client).QueryUniqueViewers(
        audience_pb2.QueryUniqueViewersRequest(auction_id="a-1"), metadata=client.metadata
    )
    count = response.unique_viewers
    assert abs(count.estimate - 10_000) / 10_000 <= 0.02
    assert count.lower_bound <= 10_000 <= count.upper_bound
    assert abs(count.identified_estimate - 3_000) / 3_000 <= 0.04
    assert (count.sketched_snapshots, count.unsketched_snapshots) == (20, 1)
    assert not count.exact
    # Any range: the first two minutes saw viewers 0..999.
    first_two = await audience(client).QueryUniqueViewers(
        audience_pb2.QueryUniqueViewersRequest(auction_id="a-1", to=ts(m + 120)), metadata=client.metadata
    )
    assert abs(first_two.unique_viewers.estimate - 1_000) / 1_000 <= 0.02


async def test_snapshot_samples_and_sketches_are_checked_and_snapshots_without_them_still_stored(
    ingest: RunningIngest,
) -> None:
    client = ingest.client()
    await client.set_analytics("a-1", True)
    m = int(ingest.clock.now) // 60 * 60 - 600
    acks = await client.send(
        [
            make_snapshot("a-1", m, samples=(3, 9)),  # 2 samples, sample_count 12
            make_snapshot("a-1", m + 60, samples=(4,) * 12),  # peak 9 and min 3 say otherwise
            make_snapshot("a-1", m + 120, identified_sketch=b"not a sketch"),
            make_snapshot("a-1", m + 180, anonymous_sketch=bytes(datasketches.cpc_sketch(12).serialize())),
            make_snapshot("a-1", m + 240),  # an older gateway's: neither samples nor sketches
        ]
    )
    assert [ack.outcome for ack in acks] == [4, 4, 4, 4, 1]
    assert acks[0].detail == "samples must hold exactly sample_count values"
    assert acks[1].detail == "samples must agree with peak_viewers and min_viewers"
    assert acks[2].detail.startswith("identified_viewer_sketch is not a CPC sketch")
    assert acks[3].detail == "anonymous_viewer_sketch must have lg_k 11"


async def test_sketches_of_one_minute_from_two_gateway_nodes_merged_count_each_viewer_once(
    ingest: RunningIngest,
) -> None:
    """Two nodes see overlapping viewers in the same minute; the sampler merges their sketches (with the
    helper the gateway is to use, service_common.viewer_sketches) into the one snapshot it sends."""
    client = ingest.client()
    await client.set_analytics("a-1", True)
    m = int(ingest.clock.now) // 60 * 60 - 300
    node_a, node_b = IntervalSketches(), IntervalSketches()
    for viewer in range(0, 3_000):  # node A: viewers 0..2,999
        node_a.add_identified(f"sub-{viewer}") if viewer % 2 else node_a.add_anonymous(f"anon-{viewer}")
    for viewer in range(2_000, 5_000):  # node B: 2,000..4,999, a thousand of them also on A (two tabs)
        node_b.add_identified(f"sub-{viewer}") if viewer % 2 else node_b.add_anonymous(f"anon-{viewer}")
    (a_identified, a_anonymous), (b_identified, b_anonymous) = node_a.serialized(), node_b.serialized()
    snapshot = make_snapshot(
        "a-1",
        m,
        identified_sketch=merge_serialized([a_identified, b_identified]),
        anonymous_sketch=merge_serialized([a_anonymous, b_anonymous]),
    )
    assert [ack.outcome for ack in await client.send([snapshot])] == [1]
    count = (
        await audience(client).QueryUniqueViewers(
            audience_pb2.QueryUniqueViewersRequest(auction_id="a-1"), metadata=client.metadata
        )
    ).unique_viewers
    assert abs(count.estimate - 5_000) / 5_000 <= 0.02
    assert abs(count.identified_estimate - 2_500) / 2_500 <= 0.03
    assert count.lower_bound <= 5_000 <= count.upper_bound
    assert merge_serialized([b"", b""]) == b""
    with pytest.raises(ValueError, match="not a CPC sketch"):
        merge_serialized([b"garbage"])


async def test_events_are_read_back_a_page_at_a_time_by_kind(ingest: RunningIngest) -> None:
    client = ingest.client()
    await client.set_analytics("a-1", True)
    now = ingest.clock.now
    sent = [opened("o-1", now - 60, "lot-1", "Vase")] + [
        bid(f"b-{n:02}", now - 50 + n, "lot-1", f"bidder-{n % 3}", amount=1000 + n) for n in range(7)
    ]
    sent.append(
        closed(
            "c-1",
            now - 10,
            "lot-1",
            E.LOT_OUTCOME_SOLD,
            hammer_price=1006,
            currency="EUR",
            winner_bidder_id="bidder-0",
        )
    )
    assert {ack.outcome for ack in await record(client, *sent)} == {STORED}
    stub = audience(client)
    seen: list[E.AuctionEvent] = []
    token = ""
    pages = 0
    while True:
        page = await stub.QueryAuctionEvents(
            audience_pb2.QueryAuctionEventsRequest(auction_id="a-1", page_size=3, page_token=token),
            metadata=client.metadata,
        )
        seen += page.events
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert list(seen) == sent  # every field, in order
    bids_only = await stub.QueryAuctionEvents(
        audience_pb2.QueryAuctionEventsRequest(
            auction_id="a-1", kinds=[audience_pb2.AUCTION_EVENT_KIND_BID_PLACED]
        ),
        metadata=client.metadata,
    )
    assert [event.event_id for event in bids_only.events] == [f"b-{n:02}" for n in range(7)]
    assert bids_only.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.QueryAuctionEvents(
            audience_pb2.QueryAuctionEventsRequest(auction_id="a-1", page_token="not-ours"),
            metadata=client.metadata,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
