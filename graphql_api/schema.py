"""The schema, composed from the query and mutation types, with its limits and error masking."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.tools import merge_types
from strawberry.utils.logging import StrawberryLogger

from graphql_api.errors import is_public, should_mask_error
from graphql_api.mutations.settings import SettingsMutations
from graphql_api.queries.auction import AuctionQueries

Query = merge_types("Query", (AuctionQueries,))
Mutation = merge_types("Mutation", (SettingsMutations,))

MASKED_MESSAGE = "internal error"


class MaskInternalErrors(MaskErrors):
    """Strawberry's MaskErrors, with ``extensions.code = "INTERNAL"`` on what it masks, so that
    clients and the error metrics can tell a server fault from a refused document."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked


class ViewerAnalyticsSchema(strawberry.Schema):
    """The schema, logging only the errors nobody expected, with their traceback.

    Expected errors (authentication, authorization, bad input, the ingest service unavailable) are
    answers, not faults: logging each with a traceback would bury the real ones.
    """

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            # The ingest client has already logged why the ingest service could not answer.
            if not is_public(error):
                StrawberryLogger.error(error, execution_context)


def create_schema(*, max_depth: int, max_tokens: int, max_aliases: int) -> strawberry.Schema:
    """The schema with the document limits (depth, tokens, aliases), checked before anything runs.

    Parsing and validation cost more than executing a small query, so both are cached per document.
    """
    # The limit rules are built once, here, rather than by a QueryDepthLimiter / MaxAliasesLimiter
    # per request: the validation cache is keyed by the rule classes, and fresh classes on every
    # request would never hit it. Introspection fields are not counted by the depth rule.
    rules: list[type[ASTValidationRule]] = [
        depth_rule(max_depth, should_ignore=None),
        aliases_rule(max_aliases),
    ]
    return ViewerAnalyticsSchema(
        query=Query,
        mutation=Mutation,
        # Factories, not instances: Strawberry builds fresh extensions for every request.
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: AddValidationRules(list(rules)),
            ParserCache,
            ValidationCache,
            lambda: MaskInternalErrors(should_mask_error=should_mask_error, error_message=MASKED_MESSAGE),
        ],
    )
