"""The gateway as a real process refuses a python-socketio it was not written for: one line, exit 2.

The other version is a distribution's metadata placed ahead of site-packages on ``PYTHONPATH``: what
``importlib.metadata`` reports, as after ``pip install python-socketio==9.9.9`` (the installed package
itself is untouched, so the process would otherwise start).
"""

from __future__ import annotations

from pathlib import Path

from testkit.processes import run_to_exit
from tests.fault_support import FAULT_WAIT, base_env


async def test_another_python_socketio_version_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    metadata = site / "python_socketio-9.9.9.dist-info"
    metadata.mkdir(parents=True)
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: python-socketio\nVersion: 9.9.9\n")
    env = base_env(
        OUTBOX_PATH=str(tmp_path / "outbox.sqlite3"),
        INGEST_TARGET="127.0.0.1:9",
        GATEWAY_PORT="0",
        PYTHONPATH=str(site),
    )
    code, _, stderr = await run_to_exit("socket_gateway", env=env, within=FAULT_WAIT)
    lines = stderr.splitlines()
    assert code == 2, lines[-5:]
    assert lines == [
        "socket_gateway: configuration error: python-socketio: installed 9.9.9, but the gateway reaches "
        "into its internals as of 5.18.1 (socket_gateway/transport/library_internals.py); install the "
        "pinned versions (pyproject.toml), or move the pins there and run "
        "tests/unit/test_library_internals.py"
    ]
