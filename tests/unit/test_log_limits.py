"""RateLimitedLog's exception lines: the traceback on the lines logged, nothing on the lines left out."""

from __future__ import annotations

import logging

import pytest

from service_common.log_limits import RateLimitedLog


def test_exception_lines_carry_the_traceback_and_are_rate_limited_like_any_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RateLimitedLog(
        logging.getLogger("tests.log_limits"), interval_seconds=10.0, burst=2, clock=lambda: now[0]
    )
    caplog.set_level(logging.INFO, logger="tests.log_limits")
    for _ in range(5):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("handler_failed", "Handler failed", extra={"sid": "s1"})
    assert [record.levelno for record in caplog.records] == [logging.ERROR, logging.ERROR]
    assert all(record.exc_info and record.exc_info[0] is RuntimeError for record in caplog.records)
    assert log.suppressed_total == 3
    now[0] += 10.0
    log.info("handler_failed", "Handler failed")
    assert caplog.records[-1].exc_info is None
    assert caplog.records[-1].suppressed == 3  # type: ignore[attr-defined]
