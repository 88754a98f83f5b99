"""GATEWAY_SOCKETIO_PATHS (issue 20): read once, checked at start, listed in --help and .env.example."""

from __future__ import annotations

from pathlib import Path

import pytest

from service_common.config import ConfigError
from socket_gateway.config import VARIABLES, GatewayConfig

KEY = "k" * 32
ROOT = Path(__file__).resolve().parents[2]


def test_the_default_is_socketio_s_own_path() -> None:
    assert GatewayConfig.from_env({"INTERNAL_API_KEY": KEY}).socketio_paths == ("/socket.io/",)
    assert VARIABLES["GATEWAY_SOCKETIO_PATHS"].default == "/socket.io/"
    assert "GATEWAY_SOCKETIO_PATHS=/socket.io/" in (ROOT / ".env.example").read_text().splitlines()


def test_several_paths_are_read_in_order() -> None:
    env = {"INTERNAL_API_KEY": KEY, "GATEWAY_SOCKETIO_PATHS": " /socket/, /auction/ ,/a/b.c/"}
    assert GatewayConfig.from_env(env).socketio_paths == ("/socket/", "/auction/", "/a/b.c/")


@pytest.mark.parametrize(
    "value",
    ["socket/", "/socket", "/", "//", "/socket/,", "/so cket/", "/socket/?x=1/", "/a/,/b/,/a/"],
)
def test_malformed_or_duplicate_paths_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        GatewayConfig.from_env({"INTERNAL_API_KEY": KEY, "GATEWAY_SOCKETIO_PATHS": value})
    assert "GATEWAY_SOCKETIO_PATHS" in str(refused.value)
