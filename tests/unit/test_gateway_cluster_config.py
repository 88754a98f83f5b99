"""The gateway's scale-out settings: REDIS_URL switches it on, the node lease is bounded."""

from __future__ import annotations

import pytest

from service_common.config import ConfigError
from socket_gateway.config import GatewayConfig

KEY = "k" * 32


def test_without_redis_url_the_gateway_runs_alone() -> None:
    config = GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "REDIS_URL": " "})
    assert config.redis_url is None
    assert config.node_lease_seconds == 10.0
    assert (config.redis_timeout_seconds, config.redis_retries) == (1.0, 3)
    assert config.redis_cluster is False


def test_redis_url_and_lease_are_read() -> None:
    config = GatewayConfig.from_env(
        {
            "INTERNAL_API_KEY": KEY,
            "REDIS_URL": "redis://127.0.0.1:6390/2",
            "GATEWAY_NODE_LEASE_SECONDS": "2.5",
            "GATEWAY_REDIS_TIMEOUT_SECONDS": "1.5",
            "GATEWAY_REDIS_RETRIES": "0",
            "GATEWAY_REDIS_CLUSTER": "true",
        }
    )
    assert config.redis_cluster is True
    assert (config.redis_url, config.node_lease_seconds) == ("redis://127.0.0.1:6390/2", 2.5)
    assert (config.redis_timeout_seconds, config.redis_retries) == (1.5, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "127.0.0.1:6379"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        # Longer than 20 s would let a dead node count for more than 30 s.
        ("GATEWAY_NODE_LEASE_SECONDS", "25"),
        ("GATEWAY_NODE_LEASE_SECONDS", "0.1"),
        # More than 2/3 of the default 10 s lease: one slow call would let the node's lease lapse.
        ("GATEWAY_REDIS_TIMEOUT_SECONDS", "7"),
        ("GATEWAY_REDIS_TIMEOUT_SECONDS", "0"),
        ("GATEWAY_REDIS_RETRIES", "11"),
        ("GATEWAY_REDIS_RETRIES", "-1"),
        ("GATEWAY_REDIS_CLUSTER", "maybe"),
    ],
)
def test_invalid_scale_out_settings_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, name: value})
    assert name in str(refused.value)


@pytest.mark.parametrize("gateway_id", ["node-{a}", "node@1", "", "-node", "x" * 101, "node 1"])
def test_a_gateway_id_that_would_break_its_redis_keys_is_refused(gateway_id: str) -> None:
    if gateway_id == "":
        # Unset: the host name and process id, which are always valid.
        assert GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "GATEWAY_ID": ""}).gateway_id
        return
    with pytest.raises(ConfigError, match="GATEWAY_ID"):
        GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "GATEWAY_ID": gateway_id})


def test_a_plain_gateway_id_is_kept() -> None:
    assert (
        GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "GATEWAY_ID": "gw-eu_1.a"}).gateway_id == "gw-eu_1.a"
    )
