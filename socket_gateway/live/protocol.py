"""The Socket.IO contract with browsers: event names, payload checks, and the signed viewer token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from service_common.auction_ids import auction_id_problem
from socket_gateway.live.rooms import RoomCounts

JOIN_EVENT = "joinAuction"
LEAVE_EVENT = "leaveAuction"
COUNT_EVENT = "viewerCountUpdate"

# Viewer ids are opaque to the gateway, but bounded so that a client cannot make them costly.
MAX_ID_LENGTH = 128
# A viewer token is a JWT (header, claims and signature, base64url): longer than an id, but bounded
# so that a client cannot make checking one costly.
MAX_TOKEN_LENGTH = 4096
_MAX_LENGTHS = {"viewerId": MAX_ID_LENGTH, "token": MAX_TOKEN_LENGTH}


class PayloadError(ValueError):
    """A payload that does not follow the contract; the message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    auction_id: str | None
    viewer_id: str | None
    token: str | None


def auction_id_of(payload: Any) -> str:
    """The auction id of a ``joinAuction`` payload: ``{auctionId}``, or the bare id string.

    The bare form is the seed's ``socket.emit("joinAuction", auctionId)``; it is held to the same
    rule (and answered with the same errors) as the object's ``auctionId``.

    Raises:
        PayloadError: the payload is neither an object with a valid ``auctionId`` nor a valid id.
    """
    if isinstance(payload, str):
        return _auction_id(payload)
    if not isinstance(payload, dict):
        raise PayloadError("expected an object {auctionId} or an auction id string")
    return _auction_id(payload.get("auctionId"))


def _auction_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise PayloadError("auctionId must be a non-empty string")
    # The rule every service applies, so a room's snapshots are never refused for their id.
    problem = auction_id_problem(value)
    if problem is not None:
        raise PayloadError(problem)
    return value


def _optional_string(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    limit = _MAX_LENGTHS[key]
    if not isinstance(value, str) or len(value) > limit:
        raise PayloadError(f"{key} must be a string of at most {limit} characters")
    return value


def connect_request_of(auth: Any) -> ConnectRequest:
    """Reads the connect ``auth`` payload ``{auctionId?, viewerId?, token?}`` (all optional).

    Raises:
        PayloadError: a field is present but malformed.
    """
    if auth is None:
        return ConnectRequest(None, None, None)
    if not isinstance(auth, dict):
        raise PayloadError("auth must be an object {auctionId, viewerId, token}")
    auction_id = auth.get("auctionId")
    return ConnectRequest(
        auction_id=None if auction_id in (None, "") else _auction_id(auction_id),
        viewer_id=_optional_string(auth, "viewerId"),
        token=_optional_string(auth, "token"),
    )


class ViewerTokenVerifier:
    """Checks the signed viewer token (HS256 JWT) when a secret is configured.

    The token's ``sub`` is the viewer id: with tokens on, a client cannot claim someone else's id
    and so cannot skew the unique-viewer count. ``exp`` is required so a leaked token expires.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def viewer_id(self, token: str | None) -> str:
        """The viewer id the token vouches for.

        Raises:
            PayloadError: the token is missing, expired, or not signed with the secret.
        """
        if token is None:
            raise PayloadError("a viewer token is required")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.InvalidTokenError as error:
            raise PayloadError(f"invalid viewer token: {error}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > MAX_ID_LENGTH:
            raise PayloadError("invalid viewer token: bad sub")
        return subject


def count_payload(auction_id: str, counts: RoomCounts) -> dict[str, Any]:
    """The ``viewerCountUpdate`` payload."""
    return {
        "auctionId": auction_id,
        "viewerCount": counts.viewer_count,
        "uniqueViewers": counts.unique_viewers,
    }


def error_ack(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}
