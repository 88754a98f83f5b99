"""local_stack.listening: which process listens on a port, read from the kernel (Linux /proc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from local_stack.listening import listens_on

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_a_listening_socket_belongs_to_the_process_that_holds_it(family: socket.AddressFamily) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as listener, socket.socket(family) as bound_only:
        listener.bind((host, 0))
        listener.listen()
        port = listener.getsockname()[1]
        bound_only.bind((host, 0))
        assert listens_on(os.getpid(), port) is True
        # Bound but not listening: no server there.
        assert listens_on(os.getpid(), bound_only.getsockname()[1]) is False
        # Another process does not hold this one's socket, though the port answers.
        other = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
        )
        try:
            assert listens_on(other.pid, port) is False
        finally:
            assert other.stdin is not None
            other.stdin.close()
            other.wait()


def test_a_process_that_has_exited_listens_on_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    assert listens_on(int(done.stdout), 1) is False
