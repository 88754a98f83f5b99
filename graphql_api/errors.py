"""Errors a caller may see, and the rule that masks every other error before it leaves the server."""

from __future__ import annotations

from typing import ClassVar

from graphql import GraphQLError

ANALYTICS_UNAVAILABLE_MESSAGE = "analytics temporarily unavailable"
# The codes of errors about the document itself, which graphql-core raises without one: it could not
# be parsed (syntax, the token limit), it did not validate against the schema (unknown fields, the
# depth and alias limits), or its variables do not fit their types.
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"


class PublicError(Exception):
    """An error meant for the caller: its message and ``extensions.code`` reach the response as they are."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # graphql-core copies an original error's ``extensions`` into the GraphQL error it builds.
        self.extensions = {"code": self.code}


class AuthenticationRequired(PublicError):
    """No bearer token, or one that cannot be trusted."""

    code = "UNAUTHENTICATED"


class AuctionNotAuthorized(PublicError):
    """The token is valid but does not cover the auction asked for."""

    code = "NOT_AUTHORIZED"


class BadUserInput(PublicError):
    """An argument the API cannot answer; the message says what to change."""

    code = BAD_USER_INPUT


class AnalyticsUnavailable(PublicError):
    """The ingest service is down or too slow; retrying later may help."""

    code = "ANALYTICS_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(ANALYTICS_UNAVAILABLE_MESSAGE)


def is_public(error: GraphQLError) -> bool:
    """Whether ``error`` may reach the caller unmasked.

    Errors without an original exception come from parsing and validation (syntax, unknown fields,
    the depth and token limits): they describe the caller's document, not the server. So do those
    about a variable, whose original exception may itself be a ``GraphQLError`` (graphql-core raises
    one when a variable's value does not fit its type: ``$enabled: Boolean!`` given ``0``); those
    have no path. A ``GraphQLError`` raised while completing a field (with a path) is a value the
    server produced that did not fit its own schema: masked.
    """
    original = error.original_error
    if original is None or isinstance(original, PublicError):
        return True
    return isinstance(original, GraphQLError) and error.path is None


def add_code(errors: list[GraphQLError] | None, code: str) -> None:
    """Gives every error of ``errors`` that has no ``extensions.code`` this one."""
    for error in errors or ():
        if not isinstance((error.extensions or {}).get("code"), str):
            error.extensions = {**(error.extensions or {}), "code": code}


def should_mask_error(error: GraphQLError) -> bool:
    """The MaskErrors rule: every exception the code did not raise on purpose is masked."""
    return not is_public(error)


def error_code(error: GraphQLError) -> str:
    """The ``extensions.code`` a response carries for ``error`` (after masking)."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    return VALIDATION_FAILED if is_public(error) else "INTERNAL"
