"""The gateway's counters and gauges, written out by service_common.prometheus (every service's writer)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service_common import prometheus
from service_common.log_limits import RateLimitedLog
from service_common.prometheus import Labels
from service_common.prometheus import parse_samples as parse_samples
from service_common.supervision import TaskHealth


@dataclass
class GatewayMetrics:
    """Counters the gateway's parts increment; gauges are read from their owners when rendered."""

    connections_total: int = 0
    connections_refused: Counter[str] = field(default_factory=Counter)
    malformed_events: Counter[str] = field(default_factory=Counter)
    count_broadcasts_total: int = 0
    count_messages_total: int = 0
    count_messages_direct_total: int = 0
    # With REDIS_URL: count updates heard from other nodes, and of those the ones for a room without a
    # socket here (cluster/relay.py).
    cluster_updates_received_total: int = 0
    cluster_updates_unserved_total: int = 0
    websockets_dropped_unread_total: int = 0
    sessions_dropped_unread: Counter[str] = field(default_factory=Counter)
    samples_total: int = 0
    snapshots_enqueued_total: int = 0
    outbox_dropped_total: int = 0
    outbox_write_failures_total: int = 0
    snapshots_acked: Counter[str] = field(default_factory=Counter)
    send_failures_total: int = 0
    last_ack_timestamp_seconds: float = 0.0
    packets_for_gone_sessions_total: int = 0
    # Each part's rate-limited log of what clients can cause, by part ("events"): its suppressed lines.
    rate_limited_logs: dict[str, RateLimitedLog] = field(default_factory=dict)

    def render(self, tasks: Sequence[TaskHealth], gauges: dict[str, tuple[str, Callable[[], float]]]) -> str:
        """The exposition text: these counters, the supervised ``tasks``, ``gauges`` (name → help, reader)."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[Labels, float]]) -> None:
            lines.extend(prometheus.family(name, kind, help_text, samples))

        for name, (help_text, read) in gauges.items():
            metric(name, "gauge", help_text, [((), read())])
        metric(
            "gateway_connections_total",
            "counter",
            "Socket.IO connections accepted.",
            [((), self.connections_total)],
        )
        metric(
            "gateway_connections_refused_total",
            "counter",
            "Connections refused, by reason.",
            prometheus.labelled("reason", self.connections_refused.items()),
        )
        metric(
            "gateway_malformed_events_total",
            "counter",
            "Events answered with an error or dropped, by event name.",
            prometheus.labelled("event", self.malformed_events.items()),
        )
        metric(
            "gateway_count_broadcasts_total",
            "counter",
            "viewerCountUpdate broadcasts to a room.",
            [((), self.count_broadcasts_total)],
        )
        metric(
            "gateway_cluster_updates_received_total",
            "counter",
            "Count updates received from other gateway nodes (REDIS_URL; only rooms with a socket here).",
            [((), self.cluster_updates_received_total)],
        )
        metric(
            "gateway_cluster_updates_unserved_total",
            "counter",
            "Of those, updates for a room without a socket on this node (its last one had just left).",
            [((), self.cluster_updates_unserved_total)],
        )
        metric(
            "gateway_count_messages_total",
            "counter",
            "viewerCountUpdate messages delivered to sockets (broadcast recipients plus direct updates).",
            [((), self.count_messages_total)],
        )
        metric(
            "gateway_count_messages_direct_total",
            "counter",
            "Of those, messages written straight into an idle WebSocket (the rest: Engine.IO's queue).",
            [((), self.count_messages_direct_total)],
        )
        metric(
            "gateway_websockets_dropped_unread_total",
            "counter",
            "WebSocket sessions dropped because their peer left too many bytes unread.",
            [((), self.websockets_dropped_unread_total)],
        )
        metric(
            "gateway_sessions_dropped_unread_total",
            "counter",
            "Sessions closed because their client left more than the per-session cap unread, by transport.",
            prometheus.labelled("transport", self.sessions_dropped_unread.items()),
        )
        metric("gateway_samples_total", "counter", "Sampler ticks taken.", [((), self.samples_total)])
        metric(
            "gateway_snapshots_enqueued_total",
            "counter",
            "Snapshots written to the outbox.",
            [((), self.snapshots_enqueued_total)],
        )
        metric(
            "gateway_outbox_dropped_total",
            "counter",
            "Snapshots dropped because the outbox was at its cap.",
            [((), self.outbox_dropped_total)],
        )
        metric(
            "gateway_outbox_write_failures_total",
            "counter",
            "Writes to the outbox file that failed (their snapshots stay in memory and are written later).",
            [((), self.outbox_write_failures_total)],
        )
        metric(
            "gateway_task_failures_total",
            "counter",
            "Failures of a supervised background task (each restarted with backoff), by task.",
            [((("task", task.name),), task.failures_total) for task in tasks],
        )
        metric(
            "gateway_snapshots_acked_total",
            "counter",
            "Snapshots acknowledged by the ingest service, by outcome.",
            prometheus.labelled("outcome", self.snapshots_acked.items()),
        )
        metric(
            "gateway_send_failures_total",
            "counter",
            "Snapshot streams that failed (the unacknowledged snapshots are re-sent).",
            [((), self.send_failures_total)],
        )
        metric(
            "gateway_last_ack_timestamp_seconds",
            "gauge",
            "When the ingest service last acknowledged a batch (0: never).",
            [((), self.last_ack_timestamp_seconds)],
        )
        metric(
            "gateway_packets_for_gone_sessions_total",
            "counter",
            "Packets (acknowledgements, mostly) for a session that had gone by then; dropped.",
            [((), self.packets_for_gone_sessions_total)],
        )
        metric(
            "gateway_log_lines_suppressed_total",
            "counter",
            "Log lines left out by a rate-limited log of what clients can cause, by part of the gateway.",
            prometheus.labelled(
                "source", [(source, log.suppressed_total) for source, log in self.rate_limited_logs.items()]
            ),
        )
        return prometheus.exposition(lines)
