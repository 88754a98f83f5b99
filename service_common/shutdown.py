"""Waiting for the signals that ask a service to stop."""

from __future__ import annotations

import asyncio
import logging
import signal

logger = logging.getLogger(__name__)


async def wait_for_stop_signal() -> signal.Signals:
    """Returns once SIGTERM or SIGINT arrives, leaving the caller to shut down cleanly."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    stop_signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(stop_signal: signal.Signals) -> None:
        if not received.done():
            received.set_result(stop_signal)

    for stop_signal in stop_signals:
        loop.add_signal_handler(stop_signal, on_signal, stop_signal)
    try:
        chosen = await received
    finally:
        for stop_signal in stop_signals:
            loop.remove_signal_handler(stop_signal)
    logger.info("Stop signal received, shutting down", extra={"signal": chosen.name})
    return chosen
