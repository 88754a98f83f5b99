"""One socket flooding the event layer with what it refuses: bounded log lines, every refusal counted."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from socket_gateway.live.events import LOG_BURST, LOG_WINDOW_SECONDS
from socket_gateway.metrics import parse_samples
from tests.gateway_support import WAIT, gateway_config, running_gateway, wait_until

FRAMES = 500
# Each a packet the event layer refuses, sent FRAMES times on one socket; the counter it moves.
FLOODS = {
    "unknown event": ('42["bid",{}]', 'gateway_malformed_events_total{event="unknown"}'),
    "unknown event with an ack": ('421["bid",{}]', 'gateway_malformed_events_total{event="unknown"}'),
    "malformed joinAuction": ('42["joinAuction","$"]', 'gateway_malformed_events_total{event="joinAuction"}'),
    "reserved event name": ('42["connect",{}]', 'gateway_malformed_events_total{event="unknown"}'),
    "namespace not connected": ('42/other,["x"]', 'gateway_malformed_events_total{event="not_connected"}'),
    "refused connect, again and again": (
        '40{"auctionId":"bad id"}',
        'gateway_connections_refused_total{reason="malformed_auth"}',
    ),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
async def test_a_flood_of_refused_events_from_one_socket_logs_a_bounded_number_of_lines(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves that 500 refused packets on one socket are each counted in /metrics, cost at most the
    event log's burst of lines per cause (plus one per window elapsed), that /metrics counts the lines
    left out, and that the socket is still served afterwards."""
    frame, counter = FLOODS[kind]
    caplog.set_level(logging.INFO)
    async with (
        running_gateway(gateway_config(tmp_path, allowed_origins=("*",))) as gateway,
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"{gateway.url}/socket.io/?EIO=4&transport=websocket", autoping=True)
        assert (await ws.receive_str()).startswith("0{")
        if not frame.startswith("40"):
            await ws.send_str("40")
            assert (await ws.receive_str()).startswith("40{")
        started = time.monotonic()
        for _ in range(FRAMES):
            await ws.send_str(frame)

        async def samples() -> dict[str, float]:
            return parse_samples(await (await http.get(f"{gateway.url}/metrics")).text())

        metrics = gateway.gateway.metrics
        await wait_until(
            lambda: (
                sum(metrics.malformed_events.values()) + sum(metrics.connections_refused.values()) >= FRAMES
            ),
            "every refused packet to be handled",
        )
        elapsed = time.monotonic() - started
        exposed = await samples()
        # Still served: a join on the same socket is answered (after the error acks and refusals).
        if frame.startswith("40"):
            await ws.send_str('40{"auctionId":"a1"}')
            answer = "40{"
        else:
            await ws.send_str('429["joinAuction",{"auctionId":"a1"}]')
            answer = '439[{"ok":true'
        while not (await asyncio.wait_for(ws.receive_str(), WAIT)).startswith(answer):
            pass
        await ws.close()

    assert exposed[counter] == FRAMES
    refused_lines = [
        record
        for record in caplog.records
        if (
            record.name == "socket_gateway.live.events"
            and record.getMessage() in ("Malformed event refused", "Connection refused")
        )
        # python-socketio's own line for an event on a namespace not connected (before the fix).
        or "is not connected to namespace" in record.getMessage()
    ]
    windows = 1 + int(elapsed // LOG_WINDOW_SECONDS)
    assert 1 <= len(refused_lines) <= LOG_BURST * windows
    # Every refusal is either a line or counted as left out.
    assert exposed['gateway_log_lines_suppressed_total{source="events"}'] == FRAMES - len(refused_lines)


async def test_acknowledgements_to_a_socket_that_closed_log_a_bounded_number_of_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Proves that events asking for acknowledgements, sent by a socket that then closes at once,
    cost at most the burst of lines about the acknowledgements that found it gone (python-engineio
    wrote one WARNING per acknowledgement), each of them counted in /metrics."""
    caplog.set_level(logging.INFO)
    events = 2_000
    async with (
        running_gateway(gateway_config(tmp_path, allowed_origins=("*",))) as gateway,
        aiohttp.ClientSession() as http,
    ):
        metrics = gateway.gateway.metrics
        started = time.monotonic()
        # How many acknowledgements find their socket gone depends on how the frames and the close
        # arrive (usually half of them); a few rounds make sure some do.
        for _ in range(5):
            ws = await http.ws_connect(f"{gateway.url}/socket.io/?EIO=4&transport=websocket")
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str("40")
            assert (await ws.receive_str()).startswith("40{")
            handled = metrics.malformed_events["unknown"]
            for ack_id in range(events):
                await ws.send_str(f'42{ack_id}["bid",{{}}]')
            await ws.close()
            # Each acknowledgement is attempted in the handler's own task right after the handler
            # counts the event, without yielding in between: once all are counted, all were tried.
            await wait_until(
                lambda handled=handled: metrics.malformed_events["unknown"] == handled + events,  # type: ignore[misc]
                "every event handled",
            )
            if metrics.packets_for_gone_sessions_total:
                break
        elapsed = time.monotonic() - started
        exposed = parse_samples(await (await http.get(f"{gateway.url}/metrics")).text())

    assert exposed["gateway_packets_for_gone_sessions_total"] >= 1
    gone = [
        record
        for record in caplog.records
        if record.getMessage() == "Packet for a session that has gone; dropped"
        # python-engineio's own line (before the fix)
        or record.getMessage().startswith("Cannot send to sid")
    ]
    assert 1 <= len(gone) <= LOG_BURST * (1 + int(elapsed // LOG_WINDOW_SECONDS))
