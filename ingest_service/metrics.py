"""The ingest service's Prometheus metrics, kept per server (no global registry), and the interceptor
that counts and times every gRPC call.

Written out by ``service_common.prometheus`` (every service's writer). Every label takes values from a
set fixed by the code: status codes, the methods this server serves, outcomes, and the rejection
reasons of ``validation.py`` (cut at their first colon, and capped); never an auction id.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from service_common import prometheus
from service_common.prometheus import Counter, Histogram, Labels
from service_common.supervision import TaskHealth

# More distinct rejection reasons than validation.py has are counted as "other" (a guard: the reasons
# are the code's own sentences, but one of them quotes the sketch library's error).
MAX_REJECTION_REASONS = 40
OTHER_REASON = "other"
# The outcome labels, as the acknowledgements name them (lower-case).
SNAPSHOT_OUTCOMES = ("stored", "duplicate", "skipped_analytics_disabled", "rejected")
EVENT_OUTCOMES = SNAPSHOT_OUTCOMES


def rejection_reason(detail: str) -> str:
    """The label of a rejection: its detail up to the first colon (what follows may quote a library)."""
    return detail.partition(":")[0].strip() or "unknown"


def method_labels(full_method: str) -> Labels:
    """``/viewer_analytics.v1.ViewerAnalyticsService/QueryViewerAnalytics`` as service and method labels.

    The service without its package (``ViewerAnalyticsService``, ``Health``), the method as the GraphQL
    API's ``graphql_api_ingest_calls_total`` names it.
    """
    service, _, method = full_method.lstrip("/").rpartition("/")
    return (("service", service.rpartition(".")[2]), ("method", method))


@dataclass(frozen=True)
class ServerState:
    """What the server's parts hold, read when ``/metrics`` is asked for.

    Args:
        serving: whether gRPC health says SERVING (the store takes writes and no stop has begun).
        tasks: the supervised background tasks.
        flag_lookups: auctions whose analytics flag was looked up, by ``hit`` (cache) or ``miss`` (store).
        log_lines_suppressed: lines left out by the rate-limited log of what clients can cause.
        alert_attempts: webhook delivery attempts, by the delivery's status after them.
    """

    serving: bool
    tasks: Sequence[TaskHealth]
    flag_lookups: Mapping[str, int]
    log_lines_suppressed: int
    alert_attempts: Mapping[str, int] = field(default_factory=dict)


class IngestMetrics:
    """Counters the service's parts increment; gauges are read from their owners when rendered."""

    def __init__(self) -> None:
        self.snapshots = Counter("ingest_snapshots_total", "Snapshots received, by outcome.")
        self.snapshots_rejected = Counter(
            "ingest_snapshots_rejected_total",
            "Snapshots rejected, by reason (the log line's reason up to its first colon).",
        )
        self.snapshot_batches = Counter(
            "ingest_snapshot_batches_total", "Snapshot batches answered with their acknowledgements."
        )
        self.snapshot_batch_duration = Histogram(
            "ingest_snapshot_batch_duration_seconds",
            "Time from reading a snapshot batch to writing its acknowledgements (validation, flags, write).",
        )
        self.snapshot_streams = Counter(
            "ingest_snapshot_streams_total", "Snapshot streams accepted (past the internal key)."
        )
        self.open_snapshot_streams = 0
        self.auction_events = Counter("ingest_auction_events_total", "Auction events received, by outcome.")
        self.calls = Counter(
            "ingest_grpc_calls_total", "gRPC calls answered, by service, method and status code."
        )
        self.call_duration = Histogram(
            "ingest_grpc_call_duration_seconds",
            "Time to answer a gRPC call with a single response (queries, writes, health checks), by method.",
        )
        self.refused_calls = Counter(
            "ingest_refused_calls_total",
            "Calls refused UNAUTHENTICATED before any handler ran, by method and reason.",
        )
        self.store_write_failures = Counter(
            "ingest_store_write_failures_total",
            "Writes the store refused (snapshot batches, flags, events): each answered UNAVAILABLE.",
        )
        self._reasons: set[str] = set()
        # Written as 0 before the first one, so that a rate over the first scrapes sees it start.
        for outcome in SNAPSHOT_OUTCOMES:
            self.snapshots.inc((("outcome", outcome),), 0)
        for outcome in EVENT_OUTCOMES:
            self.auction_events.inc((("outcome", outcome),), 0)
        for counter in (self.snapshot_batches, self.snapshot_streams, self.store_write_failures):
            counter.inc((), 0)

    def count_snapshots(self, outcomes: Iterable[str], rejections: Iterable[str]) -> None:
        """Counts one batch: each snapshot's outcome (lower-case), and each rejection's detail."""
        self.snapshot_batches.inc()
        # Tallied first: a batch holds up to thousands of snapshots and a handful of outcomes.
        for outcome, count in collections.Counter(outcomes).items():
            self.snapshots.inc((("outcome", outcome),), count)
        for detail, count in collections.Counter(rejections).items():
            reason = rejection_reason(detail)
            if reason not in self._reasons:
                if len(self._reasons) >= MAX_REJECTION_REASONS:
                    reason = OTHER_REASON
                else:
                    self._reasons.add(reason)
            self.snapshots_rejected.inc((("reason", reason),), count)

    def count_events(self, outcomes: Iterable[str]) -> None:
        """Counts each auction event of a batch by its outcome (lower-case)."""
        for outcome, count in collections.Counter(outcomes).items():
            self.auction_events.inc((("outcome", outcome),), count)

    def refused(self, method: str, reason: str) -> None:
        """Counts a call refused for its key (``method``: the full method name)."""
        self.refused_calls.inc((*method_labels(method), ("reason", reason.replace(" ", "_"))))

    def stream_opened(self) -> None:
        self.snapshot_streams.inc()
        self.open_snapshot_streams += 1

    def stream_closed(self) -> None:
        self.open_snapshot_streams -= 1

    def render(self, state: ServerState) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        lines += prometheus.family(
            "ingest_serving",
            "gauge",
            "1 while gRPC health says SERVING: the store takes writes and no stop has begun (/readyz).",
            [((), int(state.serving))],
        )
        lines += prometheus.family(
            "ingest_snapshot_streams_open",
            "gauge",
            "Snapshot streams open (each gateway holds one).",
            [((), self.open_snapshot_streams)],
        )
        for counter in (
            self.snapshots,
            self.snapshots_rejected,
            self.snapshot_batches,
            self.snapshot_streams,
            self.auction_events,
            self.calls,
            self.refused_calls,
            self.store_write_failures,
        ):
            lines += counter.render()
        lines += self.snapshot_batch_duration.render()
        lines += self.call_duration.render()
        lines += prometheus.family(
            "ingest_flag_lookups_total",
            "counter",
            "Auctions whose analytics flag a batch looked up, by result: hit (INGEST_FLAG_CACHE_SECONDS) "
            "or miss (read from the store).",
            prometheus.labelled("result", state.flag_lookups.items()),
        )
        lines += prometheus.family(
            "ingest_alert_delivery_attempts_total",
            "counter",
            "Webhook delivery attempts, by the delivery's status after the attempt.",
            prometheus.labelled("status", state.alert_attempts.items()),
        )
        lines += prometheus.family(
            "ingest_task_failures_total",
            "counter",
            "Failures of a supervised background task (each restarted with backoff), by task.",
            [((("task", task.name),), task.failures_total) for task in state.tasks],
        )
        lines += prometheus.family(
            "ingest_log_lines_suppressed_total",
            "counter",
            "Log lines left out by the rate-limited log of what clients can cause.",
            [((), state.log_lines_suppressed)],
        )
        return prometheus.exposition(lines)


class CallMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every call by service, method and status code, and times those with a single response.

    The first interceptor, so it sees the status of what the others refuse (a missing key, a
    malformed request). Only methods this server serves are counted: the label values stay the
    server's own. A streamed response (the snapshot stream, health watches) is counted when it ends,
    not timed: its length is its client's.
    """

    def __init__(self, metrics: IngestMetrics, clock: Callable[[], float] = time.perf_counter) -> None:
        self._metrics = metrics
        self._clock = clock

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        labels = method_labels(handler_call_details.method)
        kind = _behaviour_name(handler)
        behaviour = getattr(handler, kind)
        timed = not handler.response_streaming
        if inspect.isasyncgenfunction(behaviour):
            return handler._replace(**{kind: self._generator(behaviour, labels)})
        return handler._replace(**{kind: self._coroutine(behaviour, labels, timed)})

    def _finish(self, labels: Labels, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
        code = context.code()
        if code is None:
            # Neither aborted nor set: OK when it returned, what grpc answers for what it raised.
            if error is None:
                code = grpc.StatusCode.OK
            elif isinstance(error, (asyncio.CancelledError, GeneratorExit)):
                code = grpc.StatusCode.CANCELLED
            else:
                code = grpc.StatusCode.UNKNOWN
        self._metrics.calls.inc((*labels, ("code", code.name)))

    def _coroutine(
        self, behaviour: Callable[[Any, Any], Awaitable[Any]], labels: Labels, timed: bool
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = self._clock()
            error: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as raised:  # counted, then raised on as it was
                error = raised
                raise
            finally:
                self._finish(labels, context, error)
                if timed:
                    self._metrics.call_duration.observe(labels, self._clock() - started)

        return counted

    def _generator(
        self, behaviour: Callable[[Any, Any], AsyncIterator[Any]], labels: Labels
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as raised:  # counted, then raised on as it was
                error = raised
                raise
            finally:
                self._finish(labels, context, error)

        return counted


def _behaviour_name(handler: Any) -> str:
    """The handler's field holding its behaviour: ``unary_unary`` ... ``stream_stream``."""
    request = "stream" if handler.request_streaming else "unary"
    response = "stream" if handler.response_streaming else "unary"
    return f"{request}_{response}"
