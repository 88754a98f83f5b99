"""The Prometheus text the API exposes."""

from __future__ import annotations

from graphql_api.metrics import Metrics
from service_common.prometheus import Counter, Histogram


def test_counter_renders_labels_escaped() -> None:
    counter = Counter("things_total", "Things.")
    counter.inc((("path", 'a"b\\c\nd'),))
    counter.inc((("path", 'a"b\\c\nd'),), 2)
    assert counter.render() == [
        "# HELP things_total Things.",
        "# TYPE things_total counter",
        'things_total{path="a\\"b\\\\c\\nd"} 3',
    ]


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe((("route", "/x"),), value)
    assert histogram.render() == [
        "# HELP latency_seconds Latency.",
        "# TYPE latency_seconds histogram",
        'latency_seconds_bucket{route="/x",le="0.1"} 2',
        'latency_seconds_bucket{route="/x",le="1"} 3',
        'latency_seconds_bucket{route="/x",le="+Inf"} 4',
        'latency_seconds_sum{route="/x"} 3.65',
        'latency_seconds_count{route="/x"} 4',
    ]


def test_all_metrics_render_with_a_final_newline() -> None:
    text = Metrics().render()
    assert text.endswith("\n")
    assert "# TYPE graphql_api_ingest_calls_total counter" in text.splitlines()
