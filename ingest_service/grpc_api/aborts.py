"""Ending a call with a status code, typed so that control flow after it is clear."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from ingest_service.domain import StorageUnavailable
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    details: str,
    trailing_metadata: tuple[tuple[str, str], ...] = (),
) -> NoReturn:
    """Ends the call with ``code``; typed so that callers' control flow is clear to readers and mypy."""
    await context.abort(code, details, trailing_metadata)
    raise AssertionError("grpc.aio's context.abort() always raises")


async def abort_storage_unavailable(
    context: grpc.aio.ServicerContext, error: StorageUnavailable, log: RateLimitedLog
) -> NoReturn:
    """Ends the call with ``UNAVAILABLE``; the storage error is logged (rate-limited), never sent back.

    Every call fails alike while the store is down, so the line is rate-limited: its first occurrence
    carries the cause, later ones the count of calls left out.
    """
    log.error("storage_unavailable", "Storage unavailable", extra={"error": str(error)})
    await abort(context, grpc.StatusCode.UNAVAILABLE, "storage unavailable; retry later")
