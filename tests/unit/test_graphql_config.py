"""The GraphQL API's configuration: defaults, and refusals that name the variable."""

from __future__ import annotations

import pytest

from graphql_api.budget import RequestBudget
from graphql_api.config import GraphQLConfig
from service_common.config import ConfigError

KEY = "internal-key-0123456789abcdef"
SECRET = "jwt-secret-0123456789abcdef-0123456789"


def test_defaults() -> None:
    config = GraphQLConfig.from_env({"INTERNAL_API_KEY": KEY, "GRAPHQL_JWT_SECRET": SECRET})
    assert config.host == "127.0.0.1"
    assert config.port == 8080
    assert config.ingest_target == "127.0.0.1:50051"
    assert config.allowed_origins == ("http://localhost:3000",)  # the same default as the gateway
    assert config.dev_mode is False
    assert config.internal_api_key == KEY
    assert config.max_range_days == 92
    assert config.request_budget == RequestBudget(
        max_points=20_000, max_response_bytes=4 * 1024 * 1024, max_seconds=10.0, retention_days=90
    )


def test_any_origin_is_accepted_as_for_the_gateway() -> None:
    config = GraphQLConfig.from_env(
        {"INTERNAL_API_KEY": KEY, "GRAPHQL_JWT_SECRET": SECRET, "ALLOWED_ORIGIN": "*"}
    )
    assert config.allowed_origins == ("*",)


def test_every_variable_is_read() -> None:
    config = GraphQLConfig.from_env(
        {
            "INTERNAL_API_KEY": f"{KEY},older-key-0123456789abcdef",
            "GRAPHQL_JWT_SECRET": SECRET,
            "GRAPHQL_HOST": "0.0.0.0",
            "GRAPHQL_PORT": "9090",
            "INGEST_TARGET": "ingest:50051",
            "ALLOWED_ORIGIN": "https://a.example, https://b.example/",
            "GRAPHQL_INGEST_TIMEOUT_SECONDS": "1.5",
            "GRAPHQL_MAX_RANGE_DAYS": "30",
            "GRAPHQL_DEV_MODE": "TRUE",
            "GRAPHQL_MAX_POINTS_PER_REQUEST": "5000",
            "GRAPHQL_MAX_RESPONSE_BYTES": "100000",
            "GRAPHQL_MAX_REQUEST_SECONDS": "2.5",
            "VIEWER_ANALYTICS_RETENTION_DAYS": "30",
        }
    )
    # A client sends the first key of a rotation.
    assert config.internal_api_key == KEY
    assert (config.host, config.port, config.ingest_target) == ("0.0.0.0", 9090, "ingest:50051")
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.ingest_timeout_seconds == 1.5
    assert config.max_range_days == 30
    assert config.dev_mode is True
    assert config.request_budget == RequestBudget(
        max_points=5000, max_response_bytes=100_000, max_seconds=2.5, retention_days=30
    )


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"GRAPHQL_JWT_SECRET": ""}, "GRAPHQL_JWT_SECRET"),
        ({"GRAPHQL_JWT_SECRET": "short-secret"}, "GRAPHQL_JWT_SECRET"),
        ({"INTERNAL_API_KEY": ""}, "INTERNAL_API_KEY"),
        ({"INTERNAL_API_KEY": "your-secret-key-here-12345"}, "INTERNAL_API_KEY"),
        ({"GRAPHQL_PORT": "http"}, "GRAPHQL_PORT"),
        ({"ALLOWED_ORIGIN": "auctions.example"}, "ALLOWED_ORIGIN"),
        ({"GRAPHQL_DEV_MODE": "maybe"}, "GRAPHQL_DEV_MODE"),
        ({"GRAPHQL_INGEST_TIMEOUT_SECONDS": "0"}, "GRAPHQL_INGEST_TIMEOUT_SECONDS"),
        ({"GRAPHQL_MAX_POINTS_PER_REQUEST": "0"}, "GRAPHQL_MAX_POINTS_PER_REQUEST"),
        ({"GRAPHQL_MAX_POINTS_PER_REQUEST": "many"}, "GRAPHQL_MAX_POINTS_PER_REQUEST"),
        ({"GRAPHQL_MAX_RESPONSE_BYTES": "10"}, "GRAPHQL_MAX_RESPONSE_BYTES"),
        ({"GRAPHQL_MAX_REQUEST_SECONDS": "0"}, "GRAPHQL_MAX_REQUEST_SECONDS"),
    ],
)
def test_invalid_values_are_refused_by_name(changes: dict[str, str], variable: str) -> None:
    env = {"INTERNAL_API_KEY": KEY, "GRAPHQL_JWT_SECRET": SECRET, **changes}
    with pytest.raises(ConfigError) as refused:
        GraphQLConfig.from_env(env)
    assert refused.value.variable == variable
