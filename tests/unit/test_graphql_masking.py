"""Unexpected errors are masked before they reach a caller, and logged with their traceback here.

The real ingest client turns every gRPC failure into an expected error, so an unexpected one
cannot be provoked through it: a stand-in ingest client that raises is used at that boundary.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from graphql_api.auth import Principal, Role
from graphql_api.context import Context
from graphql_api.ingest import IngestClient
from graphql_api.schema import MASKED_MESSAGE, create_schema

SECRET_DETAIL = "connection string postgres://user:hunter2@db"


class FailingIngest:
    """Stands in for the ingest client and fails in a way no code path expects."""

    async def get_settings(self, auction_id: str) -> Any:
        raise RuntimeError(SECRET_DETAIL)


def context(principal: Principal | None) -> Context:
    return Context(
        request=make_mocked_request("POST", "/graphql"),
        response=web.Response(),
        ingest=cast(IngestClient, FailingIngest()),
        principal=principal,
        auth_problem="authentication required",
        clock=time.time,
        max_range_seconds=86_400,
    )


async def test_unexpected_error_is_masked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    schema = create_schema(max_depth=5, max_tokens=1000, max_aliases=15)
    with caplog.at_level(logging.ERROR):
        result = await schema.execute(
            '{ auction(id: "a-1") { settings { enableViewerAnalytics } } }',
            context_value=context(Principal("admin", Role.ADMIN, frozenset())),
        )
    assert result.errors is not None
    assert [error.message for error in result.errors] == [MASKED_MESSAGE]
    assert result.errors[0].extensions == {"code": "INTERNAL"}
    assert SECRET_DETAIL not in str(result.errors[0].formatted)
    assert result.errors[0].original_error is None
    logged = [record for record in caplog.records if record.exc_info]
    assert logged, "the unexpected error must be logged with its traceback"
    assert SECRET_DETAIL in caplog.text


async def test_expected_errors_pass_unmasked_and_are_not_logged_as_faults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema = create_schema(max_depth=5, max_tokens=1000, max_aliases=15)
    with caplog.at_level(logging.ERROR):
        result = await schema.execute('{ auction(id: "a-1") { id } }', context_value=context(None))
    assert result.errors is not None
    assert result.errors[0].message == "authentication required"
    assert result.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
