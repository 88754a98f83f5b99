"""Hostile callers of the ingest service: corrupt bytes, calls without a key, health abuse.

Raw bytes go through a real channel with identity serializers, so the server sees exactly what the
test sends. Log lines are counted from the server's own records (the server runs in this process),
except for memory, which is measured on a real ``python -m ingest_service`` process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ingest_service.grpc_api.guards import MAX_HEALTH_CHECKS, MAX_HEALTH_WATCHES
from tests.conftest import RunningIngest
from tests.fault_support import base_env, service
from tests.support import TEST_KEY

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
UNARY_METHODS = (
    "/viewer_analytics.v1.AuctionSettingsService/GetAuctionSettings",
    "/viewer_analytics.v1.AuctionSettingsService/SetViewerAnalytics",
    "/viewer_analytics.v1.ViewerAnalyticsService/QueryViewerAnalytics",
    CHECK,
)
STREAM = "/viewer_analytics.v1.SnapshotIngestService/StreamSnapshots"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# No request message of these methods parses any of them.
CORRUPT = {
    "bad-utf8": b"\x0a\x02\xff\xfe",  # field 1 (a string of every request) that is not UTF-8
    "truncated": b"\x0a\x7f\x61",  # field 1 announcing 127 bytes, holding 1
    "bad-wire-type": b"\x0f",  # field 1 with wire type 7, which does not exist
}
KEY = (("x-internal-request", TEST_KEY),)


def lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == message]


async def status_of(call: object) -> grpc.StatusCode:
    """The call's final status; a stream still open after 10 s (a watcher kept) fails the test."""

    async def finished() -> None:
        if hasattr(call, "read"):
            while await call.read() is not grpc.aio.EOF:
                pass
        else:
            await call  # type: ignore[misc]

    try:
        await asyncio.wait_for(finished(), 10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    except TimeoutError:
        call.cancel()  # type: ignore[attr-defined]
        raise AssertionError("the call was still open after 10 s") from None
    return grpc.StatusCode.OK


@pytest.fixture
def refused_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO):
        yield caplog


async def test_corrupt_bytes_on_every_method_are_invalid_argument_with_one_line_and_no_traceback(
    ingest: RunningIngest, refused_log: pytest.LogCaptureFixture
) -> None:
    channel = ingest.channel
    statuses: dict[str, set[grpc.StatusCode]] = {}
    for _ in range(5):
        for payload in CORRUPT.values():
            for method in UNARY_METHODS:
                call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
                statuses.setdefault(method, set()).add(await status_of(call(payload, metadata=KEY)))
            watch = channel.unary_stream(WATCH, request_serializer=None, response_deserializer=None)
            statuses.setdefault(WATCH, set()).add(await status_of(watch(payload, metadata=KEY)))
            for streamed in (STREAM, REFLECTION):
                stream = channel.stream_stream(streamed, request_serializer=None, response_deserializer=None)
                statuses.setdefault(streamed, set()).add(
                    await status_of(stream(iter([payload]), metadata=KEY))
                )

    assert statuses == {method: {grpc.StatusCode.INVALID_ARGUMENT} for method in statuses}
    assert len(statuses) == 7
    records = refused_log.records
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], [
        r.getMessage() for r in records
    ]
    refused = lines(refused_log, "Malformed request refused")
    # 15 corrupt requests per method, one line per method (rate-limited per method).
    assert sorted(str(getattr(r, "method", "")) for r in refused) == sorted(
        [*UNARY_METHODS, WATCH, REFLECTION]
    )
    assert len(lines(refused_log, "Malformed snapshot batch; stream ended")) == 1


async def test_calls_without_a_key_write_one_line_per_reason(
    ingest: RunningIngest, refused_log: pytest.LogCaptureFixture
) -> None:
    method = ingest.channel.unary_unary(UNARY_METHODS[0], request_serializer=None, response_deserializer=None)
    codes = set()
    for metadata in ((), (("x-internal-request", "a-wrong-key-long-enough-0123"),)):
        results = await asyncio.gather(
            *(status_of(method(b"\x0a\x01a", metadata=metadata)) for _ in range(200))
        )
        codes.update(results)
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    refusals = lines(refused_log, "Refused internal call")
    assert sorted(str(getattr(r, "reason", "")) for r in refusals) == ["key missing", "key not accepted"]


async def test_health_watches_only_known_services_and_bounds_how_many_are_open(
    ingest: RunningIngest, refused_log: pytest.LogCaptureFixture
) -> None:
    channel = ingest.channel
    watch = channel.unary_stream(
        WATCH,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    check = channel.unary_unary(
        CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    unknown = [await status_of(watch(health_pb2.HealthCheckRequest(service="x" * n))) for n in (1, 1000)]
    assert unknown == [grpc.StatusCode.NOT_FOUND] * 2
    assert len(lines(refused_log, "Health watch for an unknown service refused")) == 1

    held = [watch(health_pb2.HealthCheckRequest(service="")) for _ in range(MAX_HEALTH_WATCHES)]
    try:
        for call in held:
            assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
        one_too_many = watch(health_pb2.HealthCheckRequest(service=""))
        assert await status_of(one_too_many) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Probes are counted apart from watches: held watches never lock them out.
        answers = await asyncio.gather(
            *(check(health_pb2.HealthCheckRequest(service="")) for _ in range(MAX_HEALTH_CHECKS))
        )
        assert {answer.status for answer in answers} == {health_pb2.HealthCheckResponse.SERVING}
    finally:
        for call in held:
            call.cancel()
    again = watch(health_pb2.HealthCheckRequest(service=""))
    try:
        assert (await again.read()).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        again.cancel()


async def test_health_watches_with_huge_names_leave_the_process_small(tmp_path: Path) -> None:
    """Bounded: 20 watches of 3 MB names (the issue's attack was 100 of 4 MB) on a real process."""
    env = base_env(INGEST_PORT="0", ANALYTICS_SQLITE_PATH=str(tmp_path / "a.sqlite3"))
    async with service("ingest_service", env) as ingest:
        port = (await ingest.log_entry("Ingest service listening"))["port"]
        before = ingest.rss_kib()
        name = "x" * 3_000_000
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = channel.unary_stream(
                WATCH,
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            calls = [watch(health_pb2.HealthCheckRequest(service=name)) for _ in range(20)]

            async def first_answer(call: grpc.aio.UnaryStreamCall) -> str:
                try:
                    response = await asyncio.wait_for(call.read(), 30)
                except grpc.aio.AioRpcError as error:
                    return str(error.code().name)
                return f"answered {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"

            answers = await asyncio.gather(*(first_answer(call) for call in calls))
            grown_mib = (ingest.rss_kib() - before) / 1024
            for call in calls:
                call.cancel()
    # Before the bounds: SERVICE_UNKNOWN for each, the names kept, the process 182 MiB bigger.
    assert grown_mib < 48, grown_mib
    assert set(answers) <= {"RESOURCE_EXHAUSTED", "NOT_FOUND"}, answers
