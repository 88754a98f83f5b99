"""The bulk completion of a series' points gives exactly what graphql-core's own completion gives,
for any selection of a point's fields (aliases, __typename, @include/@skip, fragments), and returns
to the event loop while it works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
import strawberry

from graphql_api import analytics, audience
from graphql_api.execution import POINTS_PER_SLICE, AnalyticsExecutionContext, PointSeries
from graphql_api.types.analytics import ViewerAnalytics
from graphql_api.types.audience import Lot

START = int(datetime(2027, 1, 15, tzinfo=UTC).timestamp())


def series(points: int) -> analytics.ViewerAnalytics:
    return analytics.ViewerAnalytics(
        points=tuple(
            analytics.AnalyticsPoint(START + 60 * i, i / 3, i + 2, i % 7, i % 11, 12 - i % 2)
            for i in range(points)
        ),
        summary=analytics.AnalyticsSummary(0, 0.0, 0.0, None, None, 0),
        bucket_seconds=60,
    )


def schemas(points: int) -> tuple[strawberry.Schema, strawberry.Schema]:
    @strawberry.type
    class Query:
        @strawberry.field
        def series(self) -> ViewerAnalytics:
            return ViewerAnalytics.from_domain(series(points))

    return (
        strawberry.Schema(query=Query, execution_context_class=AnalyticsExecutionContext),
        strawberry.Schema(query=Query),
    )


@pytest.mark.parametrize(
    "selection",
    [
        "at avgViewers peakViewers minViewers viewerCount samples",
        "samples",
        "__typename t: at at a1: avgViewers a2: avgViewers",
        "at samples @include(if: $yes) minViewers @skip(if: $yes) peakViewers @include(if: $no)",
        "...P ... on ViewerAnalyticsPoint { viewerCount }",
    ],
)
async def test_bulk_completion_is_what_graphql_core_completes(selection: str) -> None:
    bulk, general = schemas(1234)
    document = f"""query($yes: Boolean! = true, $no: Boolean! = false) {{
        series {{ bucketSeconds points {{ {selection} }}
                  p2: points {{ at @include(if: $yes) @skip(if: $no) }} }} }}
        fragment P on ViewerAnalyticsPoint {{ avgViewers }}"""
    if "...P" not in selection:
        document = document.replace("fragment P on ViewerAnalyticsPoint { avgViewers }", "")
    fast = await bulk.execute(document)
    slow = await general.execute(document)
    assert fast.errors is None
    assert slow.errors is None
    assert fast.data == slow.data
    assert len(fast.data["series"]["points"]) == 1234  # type: ignore[index]


async def test_bulk_completion_returns_to_the_event_loop_between_slices() -> None:
    bulk, _ = schemas(20 * POINTS_PER_SLICE)
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    result = await bulk.execute("{ series { points { at samples } } }")
    elapsed = time.perf_counter() - started
    done.set()
    await ticker
    assert result.errors is None
    # One turn of the loop for the other task at least at each of the 19 slice boundaries.
    assert ticks >= 19, (ticks, elapsed)


@pytest.mark.parametrize(
    ("peak_viewers", "avg_viewers"),
    [
        (2**31 - 1, 0.5),
        (-(2**31), -0.0),
        (2**31, 1.0),
        (True, 2.0),
        (3, float("nan")),
        (3, float("inf")),
        (3, 7),
    ],
    ids=["int-max", "int-min", "int-over", "bool", "nan", "inf", "int-as-float"],
)
async def test_bulk_completion_serializes_edge_values_as_graphql_core_does(
    peak_viewers: int, avg_viewers: float
) -> None:
    """Proves that the bulk path's shortcut for plain ints and floats returns what graphql-core's
    own serialization returns, and fails where it fails, at its 32-bit and finite edges."""
    point = analytics.AnalyticsPoint(START, avg_viewers, peak_viewers, 0, 0, 12)
    edge = analytics.ViewerAnalytics((point,), analytics.AnalyticsSummary(0, 0.0, 0.0, None, None, 0), 60)

    @strawberry.type
    class Query:
        @strawberry.field
        def series(self) -> ViewerAnalytics:
            return ViewerAnalytics.from_domain(edge)

    bulk = strawberry.Schema(query=Query, execution_context_class=AnalyticsExecutionContext)
    general = strawberry.Schema(query=Query)
    document = "{ series { points { peakViewers avgViewers } } }"
    fast, slow = await bulk.execute(document), await general.execute(document)
    assert fast.data == slow.data
    assert [error.message for error in fast.errors or []] == [error.message for error in slow.errors or []]


def lot_schemas(count: int) -> tuple[strawberry.Schema, strawberry.Schema]:
    """The API's lots field over ``count`` lots of every shape (sold, passed, open: nulls and enums)."""
    lots = [
        audience.Lot(
            lot_id=f"lot-{n}",
            title=f"Lot {n}",
            opened_at=datetime.fromtimestamp(START + 60 * n, UTC),
            closed_at=None if n % 3 == 2 else datetime.fromtimestamp(START + 60 * n + 45, UTC),
            outcome=("SOLD", "PASSED", None)[n % 3],
            hammer_price=1000 + n if n % 3 == 0 else None,
            currency="EUR" if n % 3 == 0 else None,
            winner_bidder_id=f"b-{n}" if n % 3 == 0 else None,
            viewers_at_open=n,
            viewers_at_close=n + 1,
            peak_viewers=n + 2,
            avg_viewers=n / 7,
            bids=n % 5,
            bidders=n % 4,
            resolution=("SAMPLES", "MINUTES", "NONE")[n % 3],
        )
        for n in range(count)
    ]

    @strawberry.type
    class Query:
        @strawberry.field
        def lots(self) -> Sequence[Lot]:
            return PointSeries([Lot.from_domain(lot) for lot in lots], lambda lot: lot)

    return (
        strawberry.Schema(query=Query, execution_context_class=AnalyticsExecutionContext),
        strawberry.Schema(query=Query),
    )


async def test_lots_are_completed_in_bulk_as_graphql_core_completes_them_and_between_slices() -> None:
    bulk, general = lot_schemas(2 * POINTS_PER_SLICE + 1)
    document = """{ lots { lotId title openedAt closedAt outcome hammerPrice currency winnerBidderId
        viewersAtOpen viewersAtClose peakViewers avgViewers bids bidders resolution __typename } }"""
    slow = await general.execute(document)
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    fast = await bulk.execute(document)
    done.set()
    await ticker
    assert fast.errors is None
    assert slow.errors is None
    assert fast.data == slow.data
    assert fast.data["lots"][2]["outcome"] is None  # type: ignore[index]
    assert fast.data["lots"][0]["resolution"] == "SAMPLES"  # type: ignore[index]
    # Completed in slices, the event loop free between the three: graphql-core's general completion
    # returns to it not once.
    assert ticks >= 2, ticks
