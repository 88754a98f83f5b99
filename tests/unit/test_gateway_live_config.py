"""The live-count stream's variables (issue 18): read once, checked at start, with their defaults."""

from __future__ import annotations

import pytest

from service_common.config import ConfigError
from socket_gateway.config import GatewayConfig
from tests.support import TEST_KEY


def test_defaults() -> None:
    config = GatewayConfig.from_env({"INTERNAL_API_KEY": TEST_KEY})
    assert (config.grpc_host, config.grpc_port) == ("127.0.0.1", 50052)
    assert (config.live_max_streams, config.live_max_auctions_per_stream) == (1000, 10_000)
    assert config.live_update_interval_ms == 500
    assert (config.alert_rules_refresh_seconds, config.alert_settle_seconds) == (5.0, 3.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Two updates a second per auction is the stream's contract: the interval cannot go below it.
        ("GATEWAY_LIVE_UPDATE_INTERVAL_MS", "100"),
        ("GATEWAY_LIVE_MAX_STREAMS", "0"),
        ("GATEWAY_LIVE_MAX_AUCTIONS_PER_STREAM", "lots"),
        ("GATEWAY_GRPC_PORT", "70000"),
        ("GATEWAY_ALERT_SETTLE_SECONDS", "-1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        GatewayConfig.from_env({"INTERNAL_API_KEY": TEST_KEY, name: value})
    assert name in str(refused.value)
