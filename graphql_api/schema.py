"""The schema, composed from the query and mutation types, with its limits and error masking."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.tools import merge_types
from strawberry.utils.logging import StrawberryLogger

from graphql_api.errors import ANALYTICS_UNAVAILABLE_MESSAGE, is_public, should_mask_error
from graphql_api.mutations.settings import SettingsMutations
from graphql_api.queries.auction import AuctionQueries

logger = logging.getLogger(__name__)

Query = merge_types("Query", (AuctionQueries,))
Mutation = merge_types("Mutation", (SettingsMutations,))

MASKED_MESSAGE = "internal error"


class ViewerAnalyticsSchema(strawberry.Schema):
    """The schema, logging only the errors nobody expected, with their traceback.

    Expected errors (authentication, authorization, bad input, the ingest service unavailable) are
    answers, not faults: logging each with a traceback would bury the real ones.
    """

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            if is_public(error):
                if error.message == ANALYTICS_UNAVAILABLE_MESSAGE:
                    logger.warning("Answered: %s", error.message)
            else:
                StrawberryLogger.error(error, execution_context)


def create_schema(*, max_depth: int, max_tokens: int, max_aliases: int) -> strawberry.Schema:
    """The schema with the document limits: depth, tokens and aliases, checked before anything runs."""
    return ViewerAnalyticsSchema(
        query=Query,
        mutation=Mutation,
        # Factories, not instances: Strawberry builds fresh extensions for every request.
        extensions=[
            # Introspection fields (GraphiQL nests ofType a dozen levels) are not counted by the limiter.
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
            lambda: MaskErrors(should_mask_error=should_mask_error, error_message=MASKED_MESSAGE),
        ],
    )
