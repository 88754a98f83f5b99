"""The subscription variables of the GraphQL API (issue 18): defaults, and a bad value named at start."""

from __future__ import annotations

import pytest

from graphql_api.config import GraphQLConfig
from service_common.config import ConfigError
from tests.graphql_support import JWT_SECRET
from tests.support import TEST_KEY

BASE = {"INTERNAL_API_KEY": TEST_KEY, "GRAPHQL_JWT_SECRET": JWT_SECRET}


def test_defaults() -> None:
    config = GraphQLConfig.from_env(BASE)
    assert config.gateway_grpc_target == "127.0.0.1:50052"
    assert (config.max_subscriptions_per_connection, config.max_subscriptions_per_token) == (10, 50)
    assert config.subscription_idle_timeout_seconds == 60.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_GRPC_TARGET", "no-port"),
        ("GRAPHQL_MAX_SUBSCRIPTIONS_PER_CONNECTION", "0"),
        ("GRAPHQL_MAX_SUBSCRIPTIONS_PER_TOKEN", "many"),
        ("GRAPHQL_SUBSCRIPTION_IDLE_TIMEOUT_SECONDS", "0.1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        GraphQLConfig.from_env({**BASE, name: value})
    assert name in str(refused.value)
