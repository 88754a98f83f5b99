"""Bearer tokens: HS256 JWTs carrying who the caller is and which auctions they may see."""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

logger = logging.getLogger(__name__)

# Only HS256 is accepted: naming the algorithm here, not reading it from the token's header,
# is what refuses "alg": "none" and algorithm-confusion tokens.
ALGORITHM = "HS256"
# Clock skew allowed between the token issuer and this service.
LEEWAY_SECONDS = 30
MAX_AUCTIONS_IN_TOKEN = 10_000


class Role(enum.Enum):
    """What a token's ``role`` claim may say."""

    ADMIN = "admin"
    SELLER = "seller"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``sub``, ``role`` and, for sellers, the auctions they own."""

    subject: str
    role: Role
    auctions: frozenset[str]

    def may_access(self, auction_id: str) -> bool:
        """Admins may read and change any auction; sellers only those listed in their token."""
        return self.role is Role.ADMIN or auction_id in self.auctions


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or lacks a claim; the message says which."""


class TokenVerifier:
    """Checks bearer tokens against the shared HS256 secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def verify(self, token: str) -> Principal:
        """The principal a token stands for.

        Raises:
            InvalidToken: the token cannot be trusted; the message is safe to show the caller.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "role"]},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"token lacks the '{error.claim}' claim") from None
        except jwt.InvalidTokenError as error:
            # The reason is logged, not returned: telling a caller why a signature failed helps only forgers.
            logger.info("Refused a bearer token", extra={"reason": type(error).__name__})
            raise InvalidToken("token is not valid") from None
        return _principal_from_claims(claims)


def _principal_from_claims(claims: dict[str, object]) -> Principal:
    subject, role = claims["sub"], claims["role"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("token 'sub' claim must be a non-empty string")
    try:
        parsed_role = Role(role)
    except ValueError:
        raise InvalidToken("token 'role' claim must be 'admin' or 'seller'") from None
    auctions = claims.get("auctions", [])
    if (
        not isinstance(auctions, list)
        or len(auctions) > MAX_AUCTIONS_IN_TOKEN
        or not all(isinstance(auction, str) for auction in auctions)
    ):
        raise InvalidToken("token 'auctions' claim must be a list of auction ids")
    return Principal(subject=subject, role=parsed_role, auctions=frozenset(auctions))


def issue_token(
    secret: str,
    *,
    subject: str,
    role: Role,
    auctions: Sequence[str] = (),
    now: float,
    lifetime_seconds: float,
) -> str:
    """A signed token with the claims this service reads (development and tests; production tokens
    come from the auction platform's identity service, signed with the same secret)."""
    claims: dict[str, object] = {
        "sub": subject,
        "role": role.value,
        "auctions": list(auctions),
        "iat": int(now),
        "exp": int(now + lifetime_seconds),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is no such header.

    Raises:
        InvalidToken: the header is present but not a bearer token.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("expected 'Authorization: Bearer <token>'")
    return token.strip()
