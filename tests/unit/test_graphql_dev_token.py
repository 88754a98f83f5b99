"""``python -m graphql_api.dev_token`` prints a token the API accepts."""

from __future__ import annotations

import pytest

from graphql_api.auth import Role, TokenVerifier
from graphql_api.dev_token import main

SECRET = "dev-token-test-secret-0123456789abcdef"


def test_prints_an_admin_token_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAPHQL_JWT_SECRET", SECRET)
    main([])
    principal = TokenVerifier(SECRET).verify(capsys.readouterr().out.strip())
    assert principal.role is Role.ADMIN
    assert principal.subject == "dev-admin"


def test_prints_a_seller_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRAPHQL_JWT_SECRET", SECRET)
    main(["--role", "seller", "--sub", "seller-9", "--auctions", "a-1, a-2", "--hours", "1"])
    principal = TokenVerifier(SECRET).verify(capsys.readouterr().out.strip())
    assert principal.role is Role.SELLER
    assert principal.auctions == frozenset({"a-1", "a-2"})


def test_refuses_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GRAPHQL_JWT_SECRET", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "GRAPHQL_JWT_SECRET" in capsys.readouterr().err
