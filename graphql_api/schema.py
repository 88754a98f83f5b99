"""The schema, composed from the query and mutation types, with its limits and error masking."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.tools import merge_types

from graphql_api.budget import PointsBudget, RequestBudget
from graphql_api.errors import (
    BAD_USER_INPUT,
    PARSE_FAILED,
    VALIDATION_FAILED,
    add_code,
    is_public,
    should_mask_error,
)
from graphql_api.mutations.alerts import AlertMutations
from graphql_api.mutations.settings import SettingsMutations
from graphql_api.queries.alerts import AlertQueries
from graphql_api.queries.auction import AuctionQueries
from graphql_api.queries.caller import CallerQueries
from graphql_api.subscriptions.alert_deliveries import AlertDeliverySubscriptions
from graphql_api.subscriptions.shared_events import SharedEventExecutionContext
from graphql_api.subscriptions.viewer_count import ViewerCountSubscriptions
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)

Query = merge_types("Query", (AuctionQueries, CallerQueries, AlertQueries))
Mutation = merge_types("Mutation", (SettingsMutations, AlertMutations))
Subscription = merge_types("Subscription", (ViewerCountSubscriptions, AlertDeliverySubscriptions))

MASKED_MESSAGE = "internal error"


class MaskInternalErrors(MaskErrors):
    """Strawberry's MaskErrors, with ``extensions.code = "INTERNAL"`` on what it masks, so that
    clients and the error metrics can tell a server fault from a refused document."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked

    def _process_result(self, result: object) -> None:
        # Strawberry's version first checks the result against a runtime Protocol, about 50 µs for
        # each result a subscription streams; a result without errors has nothing to mask.
        if getattr(result, "errors", None):
            super()._process_result(result)


class DocumentErrorCodes(SchemaExtension):
    """Gives the errors graphql-core raises about the document an ``extensions.code``, as every
    other error has: ``GRAPHQL_PARSE_FAILED``, ``GRAPHQL_VALIDATION_FAILED``, and ``BAD_USER_INPUT``
    for variables that do not fit their types (and other refusals of the request as a whole, such as
    an unknown operation name: errors of execution without a path)."""

    def on_operation(self) -> Iterator[None]:
        # A document that could not be parsed leaves no document behind. With the parser cache, the
        # parser's error is raised through these hooks (Strawberry turns it into the answer above
        # them); without it, the error is kept as a pre-execution error.
        try:
            yield
        except GraphQLError as error:
            if self.execution_context.graphql_document is None:
                add_code([error], PARSE_FAILED)
            raise
        if self.execution_context.graphql_document is None:
            add_code(self.execution_context.pre_execution_errors, PARSE_FAILED)

    def on_validate(self) -> Iterator[None]:
        yield
        add_code(self.execution_context.pre_execution_errors, VALIDATION_FAILED)

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None) or []
        add_code([error for error in errors if error.path is None and is_public(error)], BAD_USER_INPUT)


class ViewerAnalyticsSchema(strawberry.Schema):
    """The schema, logging only the errors nobody expected, with their traceback, rate-limited.

    Expected errors (authentication, authorization, bad input, the ingest service unavailable) are
    answers, not faults: logging each with a traceback would bury the real ones. An unexpected one is
    a fault of this code; if a caller can trigger it at will, the rate limit keeps the log readable.
    """

    def __init__(self, *args: Any, log: RateLimitedLog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log = log

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            # The ingest client has already logged why the ingest service could not answer.
            if not is_public(error):
                self._log.error(
                    "unexpected_graphql_error",
                    "Unexpected error answering a GraphQL request",
                    extra={"path": error.path, "error": repr(error.original_error)},
                    exc_info=error.original_error,
                )


def create_schema(
    *,
    max_depth: int,
    max_tokens: int,
    max_aliases: int,
    budget: RequestBudget | None = None,
    log: RateLimitedLog | None = None,
) -> strawberry.Schema:
    """The schema with the document limits (depth, tokens, aliases) and the points budget, all
    checked before anything runs.

    Parsing and validation cost more than executing a small query, so both are cached per document.

    Args:
        max_depth: deepest document.
        max_tokens: largest document, in tokens.
        max_aliases: most aliases in a document.
        budget: the per-request budget (its points part is checked here); the defaults when None.
        log: where unexpected errors are logged; a fresh one on this module's logger when None.
    """
    points_budget = budget or RequestBudget()
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
        subscription=Subscription,
        # Factories, not instances: Strawberry builds fresh extensions for every request.
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: AddValidationRules(list(rules)),
            ParserCache,
            ValidationCache,
            DocumentErrorCodes,
            lambda: PointsBudget(budget=points_budget),
            lambda: MaskInternalErrors(should_mask_error=should_mask_error, error_message=MASKED_MESSAGE),
        ],
        log=log or RateLimitedLog(logger),
        execution_context_class=SharedEventExecutionContext,
    )
