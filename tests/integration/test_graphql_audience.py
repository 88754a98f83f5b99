"""Lots, bids and the funnel through the GraphQL API (real API server, real ingest service on port 0)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import datasketches
import pytest
from viewer_analytics.v1 import auction_event_service_pb2 as events_pb2

from tests.conftest import RunningIngest
from tests.graphql_support import RunningGraphQL, admin_token, graphql_config, running_graphql, seller_token
from tests.integration.test_ingest_auction_events import bid, closed, opened, record
from tests.support import make_snapshot

AUDIENCE_QUERY = """
query Audience($id: ID!) {
  auction(id: $id) {
    lots {
      lotId title openedAt closedAt outcome hammerPrice currency winnerBidderId
      viewersAtOpen viewersAtClose peakViewers avgViewers bids bidders resolution
    }
    bids(first: 2) { truncated bids { lotId bidderId amount currency channel viewers resolution } }
    funnel {
      uniqueViewers identifiedViewers bidders bids lotsSold winners
      uniqueViewerEstimate { estimate lowerBound upperBound exact sketchedSnapshots unsketchedSnapshots }
    }
  }
}
"""


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


def cpc(count: int, prefix: str) -> bytes:
    sketch = datasketches.cpc_sketch(11)
    for number in range(count):
        sketch.update(f"{prefix}{number}")
    return bytes(sketch.serialize())


async def seed(ingest: RunningIngest, auction_id: str) -> int:
    client = ingest.client()
    await client.set_analytics(auction_id, True)
    m = int(ingest.clock.now) // 60 * 60 - 600
    samples = (10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32)
    acks = await client.send(
        [
            make_snapshot(
                auction_id, m, samples=samples, viewer_count=32, peak_viewers=32, min_viewers=10,
                avg_viewers=21.0, identified_sketch=cpc(40, "sub-"), anonymous_sketch=cpc(60, "anon-"),
            ),
            make_snapshot(auction_id, m + 60),  # the seed's kind: no samples, no sketch
        ]
    )  # fmt: skip
    assert [ack.outcome for ack in acks] == [1, 1]
    E = events_pb2
    acks_events = await record(
        client,
        opened("o-1", m + 12, "lot-1", "Tea bowl", auction=auction_id),
        bid("b-1", m + 20, "lot-1", "alice", amount=40_000, auction=auction_id),
        bid("b-2", m + 25, "lot-1", "bob", amount=45_000, auction=auction_id),
        bid("b-3", m + 28, "lot-1", "alice", amount=50_000, auction=auction_id),
    )
    close = closed(
        "c-1",
        m + 31,
        "lot-1",
        E.LOT_OUTCOME_SOLD,
        hammer_price=50_000,
        currency="EUR",
        winner_bidder_id="alice",
    )
    close.auction_id = auction_id
    acks_events += await record(client, close)
    assert all(ack.outcome == E.AUCTION_EVENT_OUTCOME_STORED for ack in acks_events), acks_events
    return m


async def test_lots_bids_and_funnel_for_the_auctions_seller(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    await seed(ingest, "auction-own")
    answer = await api.execute(AUDIENCE_QUERY, {"id": "auction-own"}, token=seller_token("auction-own"))
    assert answer.errors == []
    auction = answer.data["auction"]
    [lot] = auction["lots"]
    assert {key: lot[key] for key in lot if key not in ("openedAt", "closedAt")} == {
        "lotId": "lot-1",
        "title": "Tea bowl",
        "outcome": "SOLD",
        "hammerPrice": 50_000,
        "currency": "EUR",
        "winnerBidderId": "alice",
        # Open m+12: sample at m+10 (12); hammer m+31: sample at m+30 (20); inside: 14, 16, 18, 20.
        "viewersAtOpen": 12,
        "viewersAtClose": 20,
        "peakViewers": 20,
        "avgViewers": 17.0,
        "bids": 3,
        "bidders": 2,
        "resolution": "SAMPLES",
    }
    assert auction["bids"] == {
        "truncated": True,
        "bids": [
            {"lotId": "lot-1", "bidderId": "alice", "amount": 40_000, "currency": "EUR", "channel": "ONLINE",
             "viewers": 16, "resolution": "SAMPLES"},
            {"lotId": "lot-1", "bidderId": "bob", "amount": 45_000, "currency": "EUR", "channel": "ONLINE",
             "viewers": 18, "resolution": "SAMPLES"},
        ],
    }  # fmt: skip
    funnel = auction["funnel"]
    # Estimates (CPC sketches): 100 distinct viewers, 40 of them signed in, within 2%.
    assert funnel["uniqueViewers"] == pytest.approx(100, rel=0.02)
    assert funnel["identifiedViewers"] == pytest.approx(40, rel=0.03)
    assert (funnel["bidders"], funnel["bids"], funnel["lotsSold"], funnel["winners"]) == (2, 3, 1, 1)
    estimate = funnel["uniqueViewerEstimate"]
    assert estimate["lowerBound"] <= 100 <= estimate["upperBound"]
    assert (estimate["sketchedSnapshots"], estimate["unsketchedSnapshots"]) == (1, 1)


async def test_another_sellers_auction_is_not_authorized(api: RunningGraphQL, ingest: RunningIngest) -> None:
    await seed(ingest, "auction-other")
    answer = await api.execute(AUDIENCE_QUERY, {"id": "auction-other"}, token=seller_token("auction-own"))
    assert answer.data == {"auction": None}
    assert answer.error_codes() == ["NOT_AUTHORIZED"]
    anonymous = await api.execute(AUDIENCE_QUERY, {"id": "auction-other"})
    assert anonymous.data == {"auction": None}
    admin = await api.execute(AUDIENCE_QUERY, {"id": "auction-other"}, token=admin_token())
    assert [lot["lotId"] for lot in admin.data["auction"]["lots"]] == ["lot-1"]


async def test_bad_ranges_and_limits_are_bad_user_input(api: RunningGraphQL) -> None:
    for selection, message in (
        ('lots(to: "2026-01-01T00:00:00Z") { lotId }', "'to' needs 'from'"),
        ("bids(first: 0) { truncated }", "'first' must be between 1 and 1000"),
        ('funnel(range: LAST_24_HOURS, from: "2026-01-01T00:00:00Z") { bids }', "give either 'range'"),
    ):
        answer = await api.execute(
            f'query {{ auction(id: "auction-own") {{ {selection} }} }}', token=admin_token()
        )
        assert answer.error_codes() == ["BAD_USER_INPUT"], selection
        assert answer.errors[0]["message"].startswith(message)


async def test_events_page_by_page_with_kinds(api: RunningGraphQL, ingest: RunningIngest) -> None:
    await seed(ingest, "auction-own")
    seller = seller_token("auction-own")
    query = """
    query Events($after: String) {
      auction(id: "auction-own") {
        events(kinds: [BID_PLACED, LOT_CLOSED], first: 2, after: $after) {
          nextCursor
          events { eventId kind lotId title outcome amount currency bidderId channel }
        }
      }
    }
    """
    first = await api.execute(query, {"after": None}, token=seller)
    assert first.errors == []
    page = first.data["auction"]["events"]
    assert [event["eventId"] for event in page["events"]] == ["b-1", "b-2"]
    assert page["events"][0] == {
        "eventId": "b-1", "kind": "BID_PLACED", "lotId": "lot-1", "title": None, "outcome": None,
        "amount": 40_000, "currency": "EUR", "bidderId": "alice", "channel": "ONLINE",
    }  # fmt: skip
    second = (await api.execute(query, {"after": page["nextCursor"]}, token=seller)).data["auction"]["events"]
    assert [event["eventId"] for event in second["events"]] == ["b-3", "c-1"]
    assert second["events"][1] == {
        "eventId": "c-1", "kind": "LOT_CLOSED", "lotId": "lot-1", "title": None, "outcome": "SOLD",
        "amount": 50_000, "currency": "EUR", "bidderId": "alice", "channel": None,
    }  # fmt: skip
    assert second["nextCursor"] is None  # the last page
    refused = await api.execute(query, {"after": "bm90LW91cnM="}, token=seller)
    assert refused.error_codes() == ["BAD_USER_INPUT"]


async def test_the_lot_table_as_csv_for_the_auctions_seller_only(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    m = await seed(ingest, "auction-own")
    path = "/export/auctions/auction-own/lots.csv"
    response = await api.get(path, token=seller_token("auction-own"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="lots-auction-own-')
    opened_at = datetime.fromtimestamp(m + 12, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    closed_at = datetime.fromtimestamp(m + 31, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert (await response.text()).splitlines() == [
        "auction_id,lot_id,title,opened_at_utc,closed_at_utc,outcome,hammer_price_minor_units,currency,"
        "viewers_at_open,viewers_at_close,peak_viewers,avg_viewers,bids,bidders,resolution",
        f"auction-own,lot-1,Tea bowl,{opened_at},{closed_at},SOLD,50000,EUR,12,20,20,17.000,3,2,SAMPLES",
    ]
    assert (await api.get(path, token=seller_token("auction-other"))).status == 403
    assert (await api.get(path)).status == 401
    assert (await api.get(path + "?to=2026-01-01T00:00:00Z", token=admin_token())).status == 400


async def test_a_lot_title_that_reads_as_a_formula_is_exported_as_text(
    api: RunningGraphQL, ingest: RunningIngest
) -> None:
    """A title the seller chose, such as ``=HYPERLINK(...)``, would run in the spreadsheet that opens the
    file ("CSV injection"): it is exported behind an apostrophe, which spreadsheets show as text."""
    client = ingest.client()
    await client.set_analytics("auction-formula", True)
    m = int(ingest.clock.now) // 60 * 60 - 600
    titles = ['=HYPERLINK("https://evil.example","prize")', "+1+2", "-3", "@SUM(A1)", "Tea bowl"]
    await record(
        client,
        *(
            opened(f"o-{n}", m + n, f"lot-{n}", title, auction="auction-formula")
            for n, title in enumerate(titles)
        ),
    )
    response = await api.get("/export/auctions/auction-formula/lots.csv", token=admin_token())
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [row["title"] for row in rows] == [f"'{title}" for title in titles[:-1]] + ["Tea bowl"]
