"""``DASHBOARD_GATEWAY_URL``: where the dashboard's browsers find the socket gateway."""

from __future__ import annotations

import pytest

from graphql_api.config import GraphQLConfig
from service_common.config import ConfigError

BASE = {"INTERNAL_API_KEY": "internal-key-0123456789abcdef", "GRAPHQL_JWT_SECRET": "j" * 32}


def test_default_is_the_gateways_default_address() -> None:
    assert GraphQLConfig.from_env(BASE).dashboard_gateway_url == "http://127.0.0.1:8081"


def test_value_is_trimmed() -> None:
    config = GraphQLConfig.from_env({**BASE, "DASHBOARD_GATEWAY_URL": " https://live.example/ "})
    assert config.dashboard_gateway_url == "https://live.example"


@pytest.mark.parametrize("value", ["live.example:8081", "ws://live.example"])
def test_a_value_that_is_not_an_http_url_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="DASHBOARD_GATEWAY_URL"):
        GraphQLConfig.from_env({**BASE, "DASHBOARD_GATEWAY_URL": value})
