"""The per-request budget's arithmetic: the points a document asks for, counted from the document and
its variables, and the sliced JSON encoder that stops at the byte budget."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphql import parse
from hypothesis import given, settings
from hypothesis import strategies as st

from graphql_api import analytics
from graphql_api.budget import ResponseTooLarge, encode_json_in_slices, requested_points
from graphql_api.schema import create_schema

NOW = 1_800_000_000.0  # a whole minute
DAY = 86_400
SCHEMA = create_schema(max_depth=5, max_tokens=1000, max_aliases=15)._schema


def points(document: str, variables: dict[str, Any] | None = None, operation: str | None = None) -> int:
    return requested_points(
        SCHEMA,
        parse(document),
        operation,
        variables,
        now=NOW,
        max_range_seconds=92 * DAY,
        retention_days=90,
    )


def field(arguments: str, selection: str = "points { at }") -> str:
    called = f"viewerAnalytics({arguments})" if arguments else "viewerAnalytics"
    return f'{{ auction(id: "a") {{ {called} {{ {selection} }} }} }}'


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        # ALL: at most the retention period up to now, never more than the ingest service returns.
        ("range: ALL, bucket: MINUTE", 20_000),
        ("range: ALL, bucket: FIVE_MINUTES", 20_000),
        ("range: ALL, bucket: HOUR", 2_161),
        ("range: ALL, bucket: DAY", 91),
        ("range: ALL", 500),
        ("", 500),
        # Presets and explicit ranges: exactly the buckets they touch.
        ("range: LAST_HOUR, bucket: MINUTE", 60),
        ("range: LAST_24_HOURS", 288),
        ("range: LAST_7_DAYS, bucket: HOUR", 168),
        ('from: "2027-01-15T08:00:00Z", to: "2027-01-15T08:30:00Z", bucket: MINUTE', 30),
        # Refused by the resolver before any call (more than 20,000 points, a bad range): free.
        ('from: "2026-12-01T00:00:00Z", to: "2027-01-01T00:00:00Z", bucket: MINUTE', 0),
        ('range: LAST_HOUR, from: "2027-01-15T08:00:00Z"', 0),
    ],
)
def test_each_field_counts_the_most_points_it_can_return(arguments: str, expected: int) -> None:
    assert points(field(arguments)) == expected


def test_fields_add_up_through_aliases_and_fragments_and_merged_fields_count_once() -> None:
    aliased = '{ auction(id: "a") { a: viewerAnalytics(bucket: HOUR) { points { at } } '
    aliased += "b: viewerAnalytics(bucket: DAY) { points { at } } } }"
    assert points(aliased) == 2_161 + 91
    # The same response key twice is one field once executed.
    merged = '{ auction(id: "a") { viewerAnalytics(bucket: DAY) { points { at } } '
    merged += "viewerAnalytics(bucket: DAY) { points { samples } } } }"
    assert points(merged) == 91
    fragments = """
        query { x: auction(id: "a") { ...A } y: auction(id: "b") { ... on Auction { ...A } } }
        fragment A on Auction { viewerAnalytics(range: ALL, bucket: MINUTE) { ...P } }
        fragment P on ViewerAnalytics { points { at } }
    """
    assert points(fragments) == 40_000


def test_summary_only_costs_nothing_and_points_asked_twice_or_widened_count_again() -> None:
    assert points(field("bucket: MINUTE", "summary { overallPeak } bucketSeconds")) == 0
    assert points(field("bucket: DAY", "p: points { at } q: points { at }")) == 2 * 91
    seven = "at avgViewers peakViewers minViewers viewerCount samples s2: samples"
    assert points(field("bucket: DAY", f"points {{ {seven} }}")) == 2 * 91


def test_variables_are_read_and_unusable_operations_count_zero() -> None:
    document = 'query Q($b: Bucket!, $r: RangePreset) { auction(id: "a") { '
    document += "viewerAnalytics(range: $r, bucket: $b) { points { at } } } }"
    assert points(document, {"b": "MINUTE", "r": "LAST_HOUR"}) == 60
    assert points(document, {"b": "MINUTE"}) == 20_000
    # Variables that do not fit their types: execution refuses the operation with its own error.
    assert points(document, {"b": "SEVEN_SECONDS"}) == 0
    assert points(document, {"b": "MINUTE"}, operation="Other") == 0
    assert points('mutation { setViewerAnalytics(auctionId: "a", enabled: true) { __typename } }') == 0


def test_points_bound_is_never_below_what_auto_returns() -> None:
    window = analytics.TimeWindow(int(NOW) - 90 * DAY, int(NOW))
    width = analytics.auto_bucket_seconds(window.start, window.end)  # type: ignore[arg-type]
    spanned = analytics.buckets_spanned(window.start, window.end, width)  # type: ignore[arg-type]
    assert analytics.points_bound(window, analytics.Bucket.AUTO, now=NOW, retention_days=90) == spanned
    assert spanned <= analytics.AUTO_TARGET_POINTS


def test_only_offered_widths_reach_the_ingest_service() -> None:
    for width in analytics.BUCKET_WIDTHS:
        assert analytics.checked_bucket_seconds(width) == width
        assert width % 60 == 0
        assert width <= 30 * DAY
    for width in (0, 7, 59, 61, 2**32 - 1):
        with pytest.raises(analytics.InvalidQuery):
            analytics.checked_bucket_seconds(width)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=1200) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=3000,
)


@settings(max_examples=60, deadline=None)
@given(value=json_values)
async def test_sliced_encoding_is_the_compact_json_strawberry_sends(value: Any) -> None:
    assert await encode_json_in_slices(value, max_bytes=10**9) == json.dumps(value, separators=(",", ":"))


async def test_sliced_encoding_stops_past_the_byte_budget() -> None:
    value = {"data": {"points": [{"at": "2027-01-15T08:00:00+00:00", "samples": 12}] * 5000}}
    size = len(json.dumps(value, separators=(",", ":")))
    assert len(await encode_json_in_slices(value, max_bytes=size)) == size
    with pytest.raises(ResponseTooLarge):
        await encode_json_in_slices(value, max_bytes=size - 1)
