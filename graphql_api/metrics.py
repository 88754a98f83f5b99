"""The API's Prometheus metrics, kept per application (no global registry)."""

from __future__ import annotations

from service_common import prometheus
from service_common.prometheus import Counter, Histogram


class Metrics:
    """The API's metrics: HTTP requests, and the gRPC calls it makes to the ingest service."""

    CONTENT_TYPE = prometheus.CONTENT_TYPE

    def __init__(self) -> None:
        self.http_requests = Counter(
            "graphql_api_http_requests_total", "HTTP requests answered, by route, method and status."
        )
        self.http_duration = Histogram(
            "graphql_api_http_request_duration_seconds", "Time to answer an HTTP request, by route."
        )
        self.ingest_calls = Counter(
            "graphql_api_ingest_calls_total", "gRPC calls to the ingest service, by method and status code."
        )
        self.ingest_duration = Histogram(
            "graphql_api_ingest_call_duration_seconds", "Time of gRPC calls to the ingest service, by method."
        )
        self.graphql_errors = Counter(
            "graphql_api_graphql_errors_total", "Errors in GraphQL responses, by code."
        )

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        metrics = (
            self.http_requests,
            self.http_duration,
            self.ingest_calls,
            self.ingest_duration,
            self.graphql_errors,
        )
        return prometheus.exposition(line for metric in metrics for line in metric.render())
