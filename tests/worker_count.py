"""How many xdist workers ``-n auto`` starts: two per core.

Most of the suite waits on real processes, servers and sockets rather than computing (the whole run
uses about 1.1 of 2 cores with one worker per core), so a second worker per core fills that time.
"""

from __future__ import annotations

import os

import pytest

WORKERS_PER_CORE = 2
# Each worker starts its own shared servers (SecantusDB, Redis); beyond this they cost more than
# they save.
MAX_WORKERS = 8


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, WORKERS_PER_CORE * cores))
