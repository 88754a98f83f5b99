"""The ingest service's metric labels stay bounded whatever the clients send."""

from __future__ import annotations

from ingest_service.metrics import (
    MAX_REJECTION_REASONS,
    IngestMetrics,
    ServerState,
    method_labels,
    rejection_reason,
)
from service_common.prometheus import parse_samples
from service_common.supervision import TaskHealth


def test_a_rejection_reason_is_cut_at_its_first_colon() -> None:
    # The sketch library's own error follows the colon: not part of the label.
    assert rejection_reason("identified_viewer_sketch is not a CPC sketch: bad header 0x7f") == (
        "identified_viewer_sketch is not a CPC sketch"
    )
    assert (
        rejection_reason("sample_count must be between 1 and 12") == "sample_count must be between 1 and 12"
    )


def test_reasons_past_the_cap_are_counted_as_other() -> None:
    metrics = IngestMetrics()
    details = [f"reason {n}" for n in range(MAX_REJECTION_REASONS + 5)]
    metrics.count_snapshots(["rejected"] * len(details), details)
    metrics.count_snapshots(["rejected"], ["reason 0"])
    samples = parse_samples(metrics.render(ServerState(True, [TaskHealth("t")], {}, 0)))
    reasons = {name for name in samples if name.startswith("ingest_snapshots_rejected_total")}
    assert len(reasons) == MAX_REJECTION_REASONS + 1
    assert samples['ingest_snapshots_rejected_total{reason="other"}'] == 5
    assert samples['ingest_snapshots_rejected_total{reason="reason 0"}'] == 2
    assert samples['ingest_snapshots_total{outcome="rejected"}'] == MAX_REJECTION_REASONS + 6


def test_method_labels_drop_the_package() -> None:
    assert method_labels("/viewer_analytics.v1.ViewerAnalyticsService/QueryViewerAnalytics") == (
        ("service", "ViewerAnalyticsService"),
        ("method", "QueryViewerAnalytics"),
    )
    assert method_labels("/grpc.health.v1.Health/Check") == (("service", "Health"), ("method", "Check"))
