"""TLS on the internal gRPC hops, with a throwaway CA: to the ingest service (from the gateway and the
GraphQL API) and to the gateway's live count port (from the GraphQL API).

Every test uses real servers on free loopback ports and real clients; the certificates are made at test
time by trustme (a CA, and a server certificate for localhost and 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
import trustme
from viewer_analytics.v1 import live_count_service_pb2 as live_pb
from viewer_analytics.v1 import live_count_service_pb2_grpc as live_grpc

from service_common.grpc_tls import (
    GATEWAY_GRPC_CLIENT_TLS,
    GATEWAY_GRPC_SERVER_TLS,
    ClientTls,
    open_channel,
    read_client_tls,
    read_server_tls,
)
from service_common.internal_auth import internal_key_metadata
from tests.conftest import RunningIngest, ingest_config, serving_ingest
from tests.fault_support import ServiceProcess
from tests.gateway_support import ManualClock, gateway_config, running_gateway, stored_snapshots
from tests.graphql_support import SETTINGS_QUERY, admin_token, graphql_config, running_graphql
from tests.support import TEST_KEY, FakeClock, IngestClient, make_snapshot, outcome_names

REPO = Path(__file__).resolve().parents[2]
# A refused handshake fails at once; this only bounds how long a broken test hangs.
WAIT = 10.0


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA, the ingest service's certificate chain and key, and an unrelated CA."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path

    def client_tls(self, ca: Path | None = None, server_name: str | None = None) -> ClientTls:
        """The clients' settings, read from the files as the services read them."""
        env = {"INGEST_TLS_CA_FILE": str(ca or self.ca)}
        if server_name is not None:
            env["INGEST_TLS_SERVER_NAME"] = server_name
        tls = read_client_tls(env)
        assert tls is not None
        return tls


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    files = TlsFiles(
        ca=directory / "ca.pem",
        cert=directory / "ingest.pem",
        key=directory / "ingest.key",
        other_ca=directory / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.key))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    return files


@pytest.fixture
async def tls_ingest(tmp_path: Path, clock: FakeClock, tls_files: TlsFiles) -> AsyncIterator[RunningIngest]:
    """The ingest service serving TLS on a free loopback port, with a channel that trusts its CA."""
    server_tls = read_server_tls(
        {"INGEST_TLS_CERT_FILE": str(tls_files.cert), "INGEST_TLS_KEY_FILE": str(tls_files.key)}
    )
    assert server_tls is not None
    config = ingest_config(sqlite_path=str(tmp_path / "analytics.sqlite3"), tls=server_tls)
    async with serving_ingest(config, clock, tls_files.client_tls()) as running:
        yield running


async def send_one(channel: grpc.aio.Channel, ingest: RunningIngest, auction_id: str) -> list[str]:
    """Sends one valid snapshot of ``auction_id`` on ``channel``; returns the outcomes."""
    snapshot = make_snapshot(auction_id, int(ingest.clock.now) - 60)
    async with asyncio.timeout(WAIT):
        return outcome_names(await IngestClient(channel, TEST_KEY).send([snapshot]))


async def test_a_client_trusting_the_ca_stores_a_snapshot_over_tls(tls_ingest: RunningIngest) -> None:
    """The TLS-only ingest service accepts a client that trusts its CA and stores what it sends."""
    await tls_ingest.client().set_analytics("a1", True)
    assert await send_one(tls_ingest.channel, tls_ingest, "a1") == ["STORED"]
    assert await tls_ingest.stored_count("a1") == 1


async def test_a_plaintext_client_is_refused_and_nothing_is_stored(tls_ingest: RunningIngest) -> None:
    """With TLS configured the port speaks nothing else: a plaintext client (carrying a valid key)
    gets UNAVAILABLE and nothing is stored."""
    await tls_ingest.client().set_analytics("a1", True)
    async with grpc.aio.insecure_channel(tls_ingest.target) as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send_one(plaintext, tls_ingest, "a1")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await tls_ingest.stored_count("a1") == 0


async def test_a_client_trusting_another_ca_is_refused(
    tls_ingest: RunningIngest, tls_files: TlsFiles
) -> None:
    """A client verifies the server: one trusting a different CA does not complete the handshake,
    so it never sends its key, and nothing is stored."""
    await tls_ingest.client().set_analytics("a1", True)
    async with open_channel(tls_ingest.target, tls_files.client_tls(ca=tls_files.other_ca)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send_one(channel, tls_ingest, "a1")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await tls_ingest.stored_count("a1") == 0


async def test_the_server_name_setting_is_what_the_certificate_is_checked_against(
    tls_ingest: RunningIngest, tls_files: TlsFiles
) -> None:
    """INGEST_TLS_SERVER_NAME replaces the target's host in the certificate check: a name the
    certificate carries is accepted, one it does not carry is refused."""
    await tls_ingest.client().set_analytics("a1", True)
    async with open_channel(tls_ingest.target, tls_files.client_tls(server_name="localhost")) as channel:
        assert await send_one(channel, tls_ingest, "a1") == ["STORED"]
    wrong_name = tls_files.client_tls(server_name="ingest.elsewhere.example")
    async with open_channel(tls_ingest.target, wrong_name) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send_one(channel, tls_ingest, "a1")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_gateway_delivers_a_snapshot_through_tls(
    tls_ingest: RunningIngest, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """The gateway with INGEST_TLS_CA_FILE streams a minute's snapshot to the TLS ingest service,
    which stores it, and its /readyz (the same channel) reaches the ingest health service."""
    await tls_ingest.client().set_analytics("a1", True)
    config = gateway_config(tmp_path, ingest_target=tls_ingest.target, ingest_tls=tls_files.client_tls())
    async with (
        running_gateway(config, ManualClock(tls_ingest.clock)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        await gateway.viewer({"auctionId": "a1"})
        await gateway.step(60)
        await gateway.delivered()
        assert gateway.gateway.metrics.snapshots_acked["stored"] == 1
        ready = await http.get(f"{gateway.url}/readyz")
        assert ready.status == 200, await ready.text()
    (row,) = stored_snapshots(tls_ingest.config.sqlite_path, "a1")
    assert (row["viewer_count"], row["sample_count"]) == (1, 12)


async def test_the_graphql_api_answers_through_tls(tls_ingest: RunningIngest, tls_files: TlsFiles) -> None:
    """The GraphQL API with INGEST_TLS_CA_FILE reads a flag from the TLS ingest service and reports
    itself ready."""
    await tls_ingest.client().set_analytics("a1", True)
    config = graphql_config(tls_ingest.target, ingest_tls=tls_files.client_tls())
    async with running_graphql(config, tls_ingest.clock) as api:
        answer = await api.execute(SETTINGS_QUERY, {"id": "a1"}, token=admin_token())
        assert answer.errors == []
        assert answer.data["auction"]["settings"]["enableViewerAnalytics"] is True
        ready = await api.get("/readyz")
        assert ready.status == 200, await ready.text()


async def first_live_counts(channel: grpc.aio.Channel, auction_id: str) -> live_pb.WatchViewerCountsResponse:
    call = live_grpc.LiveCountServiceStub(channel).WatchViewerCounts(
        live_pb.WatchViewerCountsRequest(auction_ids=[auction_id]), metadata=internal_key_metadata(TEST_KEY)
    )
    try:
        return await asyncio.wait_for(call.read(), WAIT)
    finally:
        call.cancel()


async def test_the_gateways_live_count_port_serves_tls_to_the_graphql_api(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """With GATEWAY_GRPC_TLS_CERT_FILE and _KEY_FILE the live count port serves TLS only: a client
    trusting the CA reads the counts, a plaintext one and one trusting another CA are refused, and the
    GraphQL API with GATEWAY_GRPC_TLS_CA_FILE delivers the counts to a subscriber."""
    server_tls = read_server_tls(
        {"GATEWAY_GRPC_TLS_CERT_FILE": str(tls_files.cert), "GATEWAY_GRPC_TLS_KEY_FILE": str(tls_files.key)},
        GATEWAY_GRPC_SERVER_TLS,
    )
    client_tls = read_client_tls({"GATEWAY_GRPC_TLS_CA_FILE": str(tls_files.ca)}, GATEWAY_GRPC_CLIENT_TLS)
    other_tls = read_client_tls(
        {"GATEWAY_GRPC_TLS_CA_FILE": str(tls_files.other_ca)}, GATEWAY_GRPC_CLIENT_TLS
    )
    assert server_tls is not None
    assert client_tls is not None
    assert other_tls is not None
    async with running_gateway(gateway_config(tmp_path, grpc_tls=server_tls)) as gateway:
        viewer = await gateway.viewer({"auctionId": "a1", "viewerId": "ann"})
        await viewer.wait_for(1)
        async with open_channel(gateway.grpc_target, client_tls) as trusting:
            first = await first_live_counts(trusting, "a1")
            assert [(u.auction_id, u.viewer_count) for u in first.updates] == [("a1", 1)]
        for refused_tls in (None, other_tls):
            async with open_channel(gateway.grpc_target, refused_tls) as refused:
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await first_live_counts(refused, "a1")
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE

        config = graphql_config(
            "127.0.0.1:1", gateway_grpc_target=gateway.grpc_target, gateway_grpc_tls=client_tls
        )
        async with (
            running_graphql(config) as api,
            api.session.ws_connect(f"{api.base_url}/graphql", protocols=("graphql-transport-ws",)) as ws,
        ):
            await ws.send_json(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {admin_token()}"}}
            )
            assert (await asyncio.wait_for(ws.receive_json(), WAIT))["type"] == "connection_ack"
            query = "subscription($id: ID!) { viewerCount(auctionId: $id) { viewerCount } }"
            await ws.send_json(
                {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"id": "a1"}}}
            )
            message = await asyncio.wait_for(ws.receive_json(), WAIT)
            assert message["type"] == "next", message
            assert message["payload"]["data"]["viewerCount"]["viewerCount"] == 1


def child_env(**variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("INGEST_", "GRAPHQL_"))}
    env.update(INTERNAL_API_KEY=TEST_KEY, LOG_FORMAT="json", **variables)
    return env


async def configuration_error(module: str, env: dict[str, str]) -> str:
    """Runs ``python -m module``, expects exit code 2 (a configuration error); returns what it printed."""
    process = await ServiceProcess.start(module, env)
    code = await process.exited()
    printed = "\n".join(str(entry.get("message", entry)) for entry in process.logs)
    assert code == 2, printed
    return printed


async def test_the_ingest_service_refuses_a_certificate_without_its_key(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """A certificate alone is a configuration error naming the missing variable, never a silent
    fallback to plaintext."""
    stderr = await configuration_error(
        "ingest_service",
        child_env(
            INGEST_PORT="0",
            ANALYTICS_SQLITE_PATH=str(tmp_path / "a.sqlite3"),
            INGEST_TLS_CERT_FILE=str(tls_files.cert),
        ),
    )
    assert "INGEST_TLS_KEY_FILE" in stderr


@pytest.mark.parametrize("module", ["socket_gateway", "graphql_api"])
async def test_a_client_refuses_an_unreadable_ca_file(module: str, tmp_path: Path) -> None:
    """The gateway and the GraphQL API read the CA at start: a missing file stops them, naming
    INGEST_TLS_CA_FILE, instead of failing at the first call."""
    stderr = await configuration_error(
        module,
        child_env(
            GRAPHQL_JWT_SECRET="graphql-test-secret-0123456789abcdef-0123456789",
            OUTBOX_PATH=str(tmp_path / "outbox.sqlite3"),
            GATEWAY_PORT="0",
            GATEWAY_GRPC_PORT="0",
            GRAPHQL_PORT="0",
            INGEST_TLS_CA_FILE=str(tmp_path / "missing-ca.pem"),
        ),
    )
    assert "INGEST_TLS_CA_FILE" in stderr
    assert "cannot read" in stderr
