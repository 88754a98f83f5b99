"""``python -m local_stack`` wires the GraphQL API's subscriptions to its gateway's live-count stream
(issue 18): a real viewer on the stack's gateway is seen by a ``viewerCount`` subscription on its API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from tests.gateway_support import Viewer
from tests.integration.test_graphql_subscriptions import TransportWS, counts_until
from tests.stack_support import START_TIMEOUT, drain, read_until_banner, start_stack, stop_stack


async def test_a_subscription_on_the_stacks_api_follows_a_viewer_on_its_gateway(tmp_path: Path) -> None:
    process, ports = await start_stack(tmp_path / "data")
    assert process.stderr is not None
    lines: list[str] = []
    viewer = Viewer(f"http://127.0.0.1:{ports['GATEWAY_PORT']}")
    try:
        banner_line = await asyncio.wait_for(read_until_banner(process.stderr, lines), START_TIMEOUT)
        match = re.search(r"#token=(\S+)", banner_line)
        assert match is not None, banner_line
        draining = asyncio.create_task(drain(process.stderr, lines))
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"http://127.0.0.1:{ports['GRAPHQL_PORT']}/graphql", protocols=("graphql-transport-ws",)
            ) as ws,
        ):
            client = TransportWS(ws)
            assert (await client.init({"Authorization": f"Bearer {match.group(1)}"}))[
                "type"
            ] == "connection_ack"
            operation = await client.subscribe("stack-auction")
            await counts_until(client, operation, 0, 0)
            await viewer.connect({"auctionId": "stack-auction", "viewerId": "v-1"})
            await counts_until(client, operation, 1, 1)
            await viewer.disconnect()
            await counts_until(client, operation, 0, 0)
        draining.cancel()
    finally:
        await viewer.disconnect()
        await stop_stack(process)
