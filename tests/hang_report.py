"""A test that hangs is reported, not waited for: what it was waiting on, then a failure.

pytest-timeout (``timeout`` in pyproject.toml, signal method) fails a test that runs too long.
Most of our tests wait inside an asyncio event loop, where the failure's traceback says only "in
select()", and an xdist worker's stderr reaches nobody: a little before the deadline this plugin
takes the stack of every pending asyncio task and adds it to the failure's report (pytest-timeout
adds the other threads'), so the report says which await never finished.
"""

from __future__ import annotations

import asyncio
import gc
import io
import threading
from collections.abc import Generator, Iterator

import pytest

# Seconds before pytest-timeout's deadline at which the task stacks are printed.
REPORT_LEAD_SECONDS = 10.0


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    # type(), not isinstance(): isinstance() on a dead weakref.proxy raises ReferenceError.
    return [
        candidate
        for candidate in gc.get_objects()
        if issubclass(type(candidate), asyncio.AbstractEventLoop) and candidate.is_running()
    ]


def _describe(nodeid: str, after_seconds: float) -> str:
    out = io.StringIO()
    print(f"{nodeid} still running after {after_seconds:.0f} s. Pending asyncio tasks:", file=out)
    for loop in _running_loops():
        # Read from another thread while the loop runs: good enough for a diagnosis, which is all
        # this is; a set changing size underneath is retried once.
        tasks: list[asyncio.Task[object]] = []
        for _ in range(2):
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                continue
        for task in tasks:
            print(f"--- {task!r}", file=out)
            try:
                _print_await_chain(task.get_coro(), out)
            except Exception as error:  # a diagnosis must not fail the run it diagnoses
                print(f"    (no stack: {error!r})", file=out)
    return out.getvalue()


def _print_await_chain(awaitable: object, out: io.StringIO) -> None:
    """Each frame from the task's coroutine down to what it waits on (Task.print_stack shows only
    the outermost frame): coroutines through ``cr_await``, generators through ``gi_yieldfrom``."""
    for _ in range(50):
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            print(f"    waiting on {awaitable!r}", file=out)
            return
        code = frame.f_code
        print(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}', file=out)
        following = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
        if following is None:
            return
        awaitable = following


_description = pytest.StashKey[list[str]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    timeout = float(item.config.getini("timeout") or 0)
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        timeout = float(marker.args[0])
    described = item.stash.setdefault(_description, [])
    timer: threading.Timer | None = None
    if timeout > REPORT_LEAD_SECONDS:
        after = timeout - REPORT_LEAD_SECONDS
        timer = threading.Timer(after, lambda: described.append(_describe(item.nodeid, after)))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    described = item.stash.get(_description, [])
    if report.failed and described:
        # A report section travels with the report from an xdist worker; its stderr does not.
        report.sections.append(("what the test was waiting on", described.pop()))
    return report
