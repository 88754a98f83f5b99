"""The ingest service's configuration: defaults, and a clear refusal naming each bad variable."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from viewer_analytics.v1 import snapshot_ingest_service_pb2 as ingest_pb2
from viewer_analytics.v1 import viewer_snapshot_pb2 as snapshot_pb2

from ingest_service.config import IngestConfig, MetricsListener, MongoSettings
from ingest_service.domain import AuctionIdType
from service_common.config import ConfigError
from service_common.timing import SnapshotTiming
from socket_gateway.config import GatewayConfig

KEY = "a-valid-internal-key-123"


def test_defaults_need_only_a_key() -> None:
    config = IngestConfig.from_env({"INTERNAL_API_KEY": KEY})
    assert config.internal_api_keys == (KEY,)
    assert (config.host, config.port) == ("127.0.0.1", 50051)
    assert config.mongodb_uri is None
    assert config.mongodb_server_selection_timeout_seconds == 5.0
    assert config.sqlite_path == "data/viewer_analytics.sqlite3"
    assert config.retention_days == 90
    assert config.timing == SnapshotTiming(60, 5)
    assert config.timing.max_samples_per_snapshot == 12
    # Flags are read for every batch, so any number of replicas agree; MongoDB as production wants it.
    assert config.flag_cache_seconds == 0.0
    assert config.mongodb == MongoSettings(
        auction_id_type=AuctionIdType.AUTO,
        auctions_collection=None,
        write_concern="majority",
        write_timeout_seconds=10.0,
        read_preference="primary",
    )


def test_mongodb_settings_are_read() -> None:
    config = IngestConfig.from_env(
        {
            "INTERNAL_API_KEY": KEY,
            "MONGODB_AUCTION_ID_TYPE": "ObjectId",
            "MONGODB_AUCTIONS_COLLECTION": "auctions",
            "MONGODB_WRITE_CONCERN": "2",
            "MONGODB_WRITE_TIMEOUT_SECONDS": "2.5",
            "MONGODB_READ_PREFERENCE": "secondaryPreferred",
        }
    )
    assert config.mongodb == MongoSettings(AuctionIdType.OBJECTID, "auctions", 2, 2.5, "secondarypreferred")
    assert IngestConfig.from_env({"INTERNAL_API_KEY": KEY, "MONGODB_AUCTION_ID_TYPE": "string"}).mongodb == (
        MongoSettings(auction_id_type=AuctionIdType.STRING)
    )


def test_every_variable_is_read() -> None:
    config = IngestConfig.from_env(
        {
            "INTERNAL_API_KEY": f" {KEY} , another-valid-key-4567 ",
            "INGEST_HOST": "0.0.0.0",
            "INGEST_PORT": "6000",
            "MONGODB_URI": "mongodb://db.internal:27017/analytics",
            "MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS": "0.5",
            "ANALYTICS_SQLITE_PATH": "/var/lib/va.sqlite3",
            "VIEWER_ANALYTICS_RETENTION_DAYS": "30",
            "SNAPSHOT_INTERVAL_SECONDS": "6",
            "SAMPLE_INTERVAL_SECONDS": "1",
        }
    )
    assert config.internal_api_keys == (KEY, "another-valid-key-4567")
    assert (config.host, config.port) == ("0.0.0.0", 6000)
    assert config.mongodb_uri == "mongodb://db.internal:27017/analytics"
    assert config.mongodb_server_selection_timeout_seconds == 0.5
    assert config.sqlite_path == "/var/lib/va.sqlite3"
    assert config.retention_days == 30
    assert config.timing.max_samples_per_snapshot == 6


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"INTERNAL_API_KEY": ""}, "INTERNAL_API_KEY"),
        ({"INTERNAL_API_KEY": "too-short"}, "INTERNAL_API_KEY"),
        ({"INTERNAL_API_KEY": "your-secret-key-here-12345"}, "INTERNAL_API_KEY"),
        ({"INGEST_PORT": "http"}, "INGEST_PORT"),
        ({"INGEST_PORT": "70000"}, "INGEST_PORT"),
        ({"VIEWER_ANALYTICS_RETENTION_DAYS": "0"}, "VIEWER_ANALYTICS_RETENTION_DAYS"),
        ({"MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS": "0"}, "MONGODB_SERVER_SELECTION_TIMEOUT_SECONDS"),
        ({"SNAPSHOT_INTERVAL_SECONDS": "5", "SAMPLE_INTERVAL_SECONDS": "10"}, "SAMPLE_INTERVAL_SECONDS"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"MONGODB_AUCTION_ID_TYPE": "uuid"}, "MONGODB_AUCTION_ID_TYPE"),
        ({"MONGODB_AUCTIONS_COLLECTION": "system.users"}, "MONGODB_AUCTIONS_COLLECTION"),
        ({"MONGODB_AUCTIONS_COLLECTION": "auc$tions"}, "MONGODB_AUCTIONS_COLLECTION"),
        ({"MONGODB_WRITE_CONCERN": "0"}, "MONGODB_WRITE_CONCERN"),
        ({"MONGODB_WRITE_CONCERN": "most"}, "MONGODB_WRITE_CONCERN"),
        ({"MONGODB_WRITE_TIMEOUT_SECONDS": "0"}, "MONGODB_WRITE_TIMEOUT_SECONDS"),
        ({"MONGODB_READ_PREFERENCE": "fastest"}, "MONGODB_READ_PREFERENCE"),
    ],
)
def test_invalid_values_name_their_variable(changes: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        IngestConfig.from_env({"INTERNAL_API_KEY": KEY, **changes})
    assert refused.value.variable == variable
    assert str(refused.value).startswith(variable)


@pytest.mark.parametrize(("snapshot", "sample", "samples"), [(60, 5, 12), (60, 7, 9), (10, 10, 1), (6, 1, 6)])
def test_samples_an_interval_holds(snapshot: int, sample: int, samples: int) -> None:
    # Sampling at 0, s, 2s, ... inside [0, interval) gives ceil(interval / s) samples.
    assert SnapshotTiming(snapshot, sample).max_samples_per_snapshot == samples


def test_the_default_message_limit_fits_the_largest_batch_a_gateway_sends() -> None:
    """The server reads at most INGEST_MAX_MESSAGE_BYTES from anyone; a real batch must always fit."""
    with pytest.raises(ConfigError, match="GATEWAY_SEND_BATCH_SIZE"):
        GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "GATEWAY_SEND_BATCH_SIZE": "5001"})
    largest_batch = GatewayConfig.from_env(
        {"INTERNAL_API_KEY": KEY, "GATEWAY_SEND_BATCH_SIZE": "5000"}
    ).send_batch_size
    largest = snapshot_pb2.ViewerSnapshot(
        auction_id="a" * 128,
        minute_start=Timestamp(seconds=2**33),
        viewer_count=10_000_000,
        avg_viewers=9_999_999.5,
        peak_viewers=10_000_000,
        min_viewers=10_000_000,
        sample_count=2**32 - 1,
        unique_viewers=10_000_000,
        partial=True,
        gateway_id="g" * 128,
    )
    batch = ingest_pb2.StreamSnapshotsRequest(snapshots=[largest] * largest_batch)
    default = IngestConfig.from_env({"INTERNAL_API_KEY": KEY}).max_message_bytes
    assert batch.ByteSize() < default < 2 * batch.ByteSize()


def test_the_metrics_listener_defaults_to_the_port_below_the_grpc_one() -> None:
    """Below, not above: 50052 is the socket gateway's internal gRPC port on the same host."""
    defaults = IngestConfig.from_env({"INTERNAL_API_KEY": KEY})
    assert defaults.metrics == MetricsListener("127.0.0.1", 50050)
    moved = IngestConfig.from_env({"INTERNAL_API_KEY": KEY, "INGEST_PORT": "6000"})
    assert moved.metrics == MetricsListener("127.0.0.1", 5999)
    # A service told to take any free gRPC port takes any free metrics port too.
    assert IngestConfig.from_env({"INTERNAL_API_KEY": KEY, "INGEST_PORT": "0"}).metrics == MetricsListener()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"INGEST_METRICS_PORT": "9464", "INGEST_METRICS_HOST": "0.0.0.0"}, MetricsListener("0.0.0.0", 9464)),
        ({"INGEST_METRICS_PORT": "0"}, MetricsListener("127.0.0.1", 0)),
        ({"INGEST_METRICS_PORT": "off"}, None),
        ({"INGEST_METRICS_PORT": " OFF "}, None),
    ],
)
def test_the_metrics_listener_is_read(settings: dict[str, str], expected: MetricsListener | None) -> None:
    assert IngestConfig.from_env({"INTERNAL_API_KEY": KEY, **settings}).metrics == expected


@pytest.mark.parametrize(
    "settings",
    [
        {"INGEST_METRICS_PORT": "metrics"},
        {"INGEST_METRICS_PORT": "70000"},
        {"INGEST_METRICS_PORT": "-1"},
        {"INGEST_METRICS_PORT": "6000", "INGEST_PORT": "6000"},
    ],
)
def test_an_invalid_metrics_port_names_its_variable(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as refused:
        IngestConfig.from_env({"INTERNAL_API_KEY": KEY, **settings})
    assert refused.value.variable == "INGEST_METRICS_PORT"
