"""Errors a caller may see, and the rule that masks every other error before it leaves the server."""

from __future__ import annotations

from typing import ClassVar

from graphql import GraphQLError

ANALYTICS_UNAVAILABLE_MESSAGE = "analytics temporarily unavailable"


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

    code = "BAD_USER_INPUT"


class AnalyticsUnavailable(PublicError):
    """The ingest service is down or too slow; retrying later may help."""

    code = "ANALYTICS_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(ANALYTICS_UNAVAILABLE_MESSAGE)


def is_public(error: GraphQLError) -> bool:
    """Whether ``error`` may reach the caller unmasked.

    Errors without an original exception come from parsing and validation (syntax, unknown fields,
    the depth and token limits): they describe the caller's document, not the server. So do those
    whose original exception is itself a ``GraphQLError``: graphql-core raises one when a variable's
    value does not fit its type (``$enabled: Boolean!`` given ``0``).
    """
    return error.original_error is None or isinstance(error.original_error, PublicError | GraphQLError)


def should_mask_error(error: GraphQLError) -> bool:
    """The MaskErrors rule: every exception the code did not raise on purpose is masked."""
    return not is_public(error)


def error_code(error: GraphQLError) -> str:
    """The ``extensions.code`` a response carries for ``error`` (after masking)."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    return "GRAPHQL_VALIDATION" if is_public(error) else "INTERNAL"
