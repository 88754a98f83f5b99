"""Bearer tokens: what the verifier accepts and what it refuses."""

from __future__ import annotations

import time

import jwt
import pytest

from graphql_api.auth import InvalidToken, Principal, Role, TokenVerifier, bearer_token, issue_token

SECRET = "unit-test-secret-0123456789abcdef-0123456789"
FAR_FUTURE = 4_102_444_800  # 2100-01-01


def verify(token: str) -> Principal:
    return TokenVerifier(SECRET).verify(token)


def encode(claims: dict[str, object], algorithm: str = "HS256", secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_admin_may_access_any_auction() -> None:
    principal = verify(
        issue_token(SECRET, subject="a", role=Role.ADMIN, now=time.time(), lifetime_seconds=60)
    )
    assert principal == Principal("a", Role.ADMIN, frozenset())
    assert principal.may_access("anything")


def test_seller_may_access_listed_auctions_only() -> None:
    token = issue_token(
        SECRET, subject="s", role=Role.SELLER, auctions=["a-1", "a-2"], now=time.time(), lifetime_seconds=60
    )
    principal = verify(token)
    assert principal.role is Role.SELLER
    assert principal.may_access("a-1")
    assert principal.may_access("a-2")
    assert not principal.may_access("a-3")
    assert not principal.may_access("")


def test_seller_without_auctions_claim_may_access_nothing() -> None:
    principal = verify(encode({"sub": "s", "role": "seller", "exp": FAR_FUTURE}))
    assert not principal.may_access("a-1")


def test_expired_beyond_leeway_is_refused_within_leeway_accepted() -> None:
    now = time.time()
    with pytest.raises(InvalidToken, match="expired"):
        verify(encode({"sub": "s", "role": "admin", "exp": int(now) - 120}))
    assert verify(encode({"sub": "s", "role": "admin", "exp": int(now) - 5})).role is Role.ADMIN


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"role": "admin", "exp": FAR_FUTURE}, "'sub'"),
        ({"sub": "s", "exp": FAR_FUTURE}, "'role'"),
        ({"sub": "s", "role": "admin"}, "'exp'"),
        ({"sub": "s", "role": "owner", "exp": FAR_FUTURE}, "'admin' or 'seller'"),
        ({"sub": "", "role": "admin", "exp": FAR_FUTURE}, "non-empty"),
        ({"sub": "s", "role": "seller", "exp": FAR_FUTURE, "auctions": "a-1"}, "list"),
        ({"sub": "s", "role": "seller", "exp": FAR_FUTURE, "auctions": [1, 2]}, "list"),
    ],
)
def test_claims_are_required_and_checked(claims: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        verify(encode(claims))


def test_other_algorithms_and_secrets_are_refused() -> None:
    claims = {"sub": "s", "role": "admin", "exp": FAR_FUTURE}
    # The right secret with another HMAC: refused because only HS256 is accepted.
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        other_algorithm = encode(claims, algorithm="HS512")
    with pytest.raises(InvalidToken, match="not valid"):
        verify(other_algorithm)
    with pytest.raises(InvalidToken, match="not valid"):
        verify(encode(claims, secret="another-secret-0123456789abcdef-0123456789"))
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(InvalidToken, match="not valid"):
        verify(unsigned)
    with pytest.raises(InvalidToken, match="not valid"):
        verify("a.b.c")


def test_bearer_header_parsing() -> None:
    assert bearer_token(None) is None
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    for header in ("Basic abc", "Bearer", "Bearer ", "abc"):
        with pytest.raises(InvalidToken, match="Bearer"):
            bearer_token(header)
