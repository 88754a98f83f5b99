"""``AuctionSettingsService``: reading and toggling an auction's viewer analytics."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from viewer_analytics.v1 import auction_settings_service_pb2 as settings_pb2

from ingest_service.analytics_flags import AnalyticsFlagCache
from ingest_service.domain import AuctionIdType, AuctionNotFound, AuctionSettings, StorageUnavailable
from ingest_service.grpc_api.aborts import abort, abort_storage_unavailable
from ingest_service.grpc_api.conversions import settings_to_wire
from ingest_service.storage.port import SnapshotStore
from ingest_service.validation import accepted_auction_id_problem
from service_common.log_limits import RateLimitedLog

logger = logging.getLogger(__name__)


class AuctionSettingsServicer:
    def __init__(
        self,
        store: SnapshotStore,
        flags: AnalyticsFlagCache,
        clock: Callable[[], float],
        log: RateLimitedLog,
        write_failed: Callable[[StorageUnavailable], None],
        auction_id_type: AuctionIdType = AuctionIdType.AUTO,
    ) -> None:
        self._store = store
        self._flags = flags
        self._clock = clock
        self._auction_id_type = auction_id_type
        self._log = log
        self._write_failed = write_failed

    async def GetAuctionSettings(
        self, request: settings_pb2.GetAuctionSettingsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.GetAuctionSettingsResponse:
        await _require_valid_auction_id(request.auction_id, self._auction_id_type, context)
        try:
            found = await self._store.get_settings([request.auction_id])
        except StorageUnavailable as error:
            await abort_storage_unavailable(context, error, self._log)
        settings = found.get(request.auction_id) or AuctionSettings.never_configured(request.auction_id)
        return settings_pb2.GetAuctionSettingsResponse(settings=settings_to_wire(settings))

    async def SetViewerAnalytics(
        self, request: settings_pb2.SetViewerAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> settings_pb2.SetViewerAnalyticsResponse:
        await _require_valid_auction_id(request.auction_id, self._auction_id_type, context)
        try:
            settings = await self._store.set_viewer_analytics(
                request.auction_id, request.enabled, self._clock()
            )
        except StorageUnavailable as error:
            self._write_failed(error)
            await abort_storage_unavailable(context, error, self._log)
        except AuctionNotFound as error:
            # INVALID_ARGUMENT, which the GraphQL API turns into its InvalidInput result: the id
            # names nothing the flag could be written on (the store creates no auction documents).
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        self._flags.remember(settings)
        logger.info(
            "Viewer analytics setting changed",
            extra={"auction_id": settings.auction_id, "enabled": settings.enable_viewer_analytics},
        )
        return settings_pb2.SetViewerAnalyticsResponse(settings=settings_to_wire(settings))


async def _require_valid_auction_id(
    auction_id: str, id_type: AuctionIdType, context: grpc.aio.ServicerContext
) -> None:
    problem = accepted_auction_id_problem(auction_id, id_type)
    if problem:
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
