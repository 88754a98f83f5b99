"""Every GraphQL error carries ``extensions.code``, those about the document itself too (parsing,
validation, variables), and bucket widths outside the schema's choices are refused with a code:
a real API on a loopback port in front of a real ingest service (SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import RunningIngest
from tests.graphql_support import (
    ANALYTICS_QUERY,
    SET_ANALYTICS,
    RunningGraphQL,
    admin_token,
    graphql_config,
    running_graphql,
)


@pytest.fixture
async def api(ingest: RunningIngest) -> AsyncIterator[RunningGraphQL]:
    async with running_graphql(graphql_config(ingest.target), ingest.clock) as running:
        yield running


@pytest.mark.parametrize(
    ("document", "variables", "code", "says"),
    [
        ("{ auction(id: ", {}, "GRAPHQL_PARSE_FAILED", "Syntax Error"),
        ('query { auction(id: "a") { ' + "id " * 1200 + "} }", {}, "GRAPHQL_PARSE_FAILED", "1000 tokens"),
        ('{ auction(id: "a") { nope } }', {}, "GRAPHQL_VALIDATION_FAILED", "Cannot query field 'nope'"),
        (
            " ".join(["query {", *(f'a{n}: auction(id: "a{n}") {{ id }}' for n in range(16)), "}"]),
            {},
            "GRAPHQL_VALIDATION_FAILED",
            "aliases",
        ),
        (
            '{ auction(id: "a") { viewerAnalytics(bucket: SEVEN_SECONDS) { bucketSeconds } } }',
            {},
            "GRAPHQL_VALIDATION_FAILED",
            "SEVEN_SECONDS",
        ),
        (
            '{ auction(id: "a") { viewerAnalytics(bucket: 7) { bucketSeconds } } }',
            {},
            "GRAPHQL_VALIDATION_FAILED",
            "7",
        ),
        (ANALYTICS_QUERY, {"id": "a", "bucket": "SEVEN_SECONDS"}, "BAD_USER_INPUT", "$bucket"),
        (ANALYTICS_QUERY, {"id": "a", "bucket": 7}, "BAD_USER_INPUT", "$bucket"),
        (ANALYTICS_QUERY, {"id": "a", "from": "yesterday"}, "BAD_USER_INPUT", "$from"),
        (ANALYTICS_QUERY, {}, "BAD_USER_INPUT", "$id"),
        (SET_ANALYTICS, {"id": "a", "enabled": 0}, "BAD_USER_INPUT", "$enabled"),
    ],
    ids=[
        "syntax",
        "tokens",
        "unknown-field",
        "aliases",
        "bucket-literal-name",
        "bucket-literal-width",
        "bucket-variable-name",
        "bucket-variable-width",
        "datetime-variable",
        "missing-variable",
        "boolean-variable",
    ],
)
async def test_errors_about_the_document_carry_a_code(
    api: RunningGraphQL, document: str, variables: dict[str, object], code: str, says: str
) -> None:
    """Proves that a refused document is told why with a code a client can branch on, as every
    other error is: parse failures, validation failures (a bucket the schema does not offer among
    them) and variables that do not fit their types; and that the metrics count them by that code."""
    response = await api.execute(document, variables, token=admin_token())
    assert response.data is None
    (error,) = response.errors
    assert error["extensions"] == {"code": code}
    assert says in error["message"]
    metrics = await (await api.get("/metrics")).text()
    assert f'graphql_api_graphql_errors_total{{code="{code}"}} 1' in metrics


async def test_the_csv_export_refuses_a_bucket_the_schema_does_not_offer(api: RunningGraphQL) -> None:
    for bucket in ("7", "SECOND", "SEVEN_SECONDS", "4294967295"):
        refused = await api.get(
            f"/export/auctions/a/viewer-analytics.csv?range=ALL&bucket={bucket}", token=admin_token()
        )
        assert refused.status == 400
        assert (
            "'bucket' must be one of AUTO, MINUTE, FIVE_MINUTES, HOUR, DAY" in (await refused.json())["error"]
        )
