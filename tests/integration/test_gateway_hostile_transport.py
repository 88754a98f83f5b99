"""Hostile clients at the transport and connection level, against the real gateway on a free port.

The gateway is served as ``python -m socket_gateway`` serves it (``GatewaySite``); clients are aiohttp
clients and raw sockets, so requests a browser would never make (posts that never poll, frames split
without end, connections that never finish a request) can be made.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from tests.gateway_support import ALLOWED_ORIGIN, gateway_config, running_gateway

POLLING = "/socket.io/?EIO=4&transport=polling"


async def test_a_rate_limited_polling_handshake_carries_cors_and_a_flood_of_them_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves that a browser sees the 429 (it carries the CORS headers Engine.IO's own answers carry,
    so it is not reported as a CORS error), and that 500 refused handshakes write one log line."""
    caplog.set_level(logging.INFO, logger="socket_gateway")
    config = gateway_config(tmp_path, connections_per_ip_per_minute=2)
    async with running_gateway(config) as running, aiohttp.ClientSession() as http:
        headers = {"Origin": ALLOWED_ORIGIN}
        for _ in range(2):
            async with http.get(running.url + POLLING, headers=headers) as allowed:
                assert allowed.status == 200
        async with http.get(running.url + POLLING, headers=headers) as refused:
            assert refused.status == 429
            assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
            assert refused.headers["Access-Control-Allow-Credentials"] == "true"
        async with http.get(running.url + POLLING, headers={"Origin": "https://evil.example"}) as other:
            assert other.status == 429
            assert "Access-Control-Allow-Origin" not in other.headers
        for _ in range(500):
            async with http.get(running.url + POLLING, headers=headers) as flood:
                assert flood.status == 429
        assert running.gateway.metrics.connections_refused["rate_limited"] == 502
    refusals = [record for record in caplog.records if record.getMessage() == "Connection refused"]
    assert len(refusals) == 1, len(refusals)
