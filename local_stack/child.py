"""Starts one service as a child of local_stack that gets SIGTERM when local_stack dies, even by SIGKILL.

``python -m local_stack.child <local_stack's pid> <module>`` asks the Linux kernel for a parent-death
signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``) and then replaces itself with ``python -m <module>``:
the same pid, the same environment, and the setting survives ``execve``. SIGTERM, not SIGKILL, so
each service still shuts down gracefully and flushes what it holds.

Why a wrapper rather than ``preexec_fn``: ``preexec_fn`` runs Python code between ``fork`` and
``exec`` in a copy of local_stack, which has threads by then (asyncio's child watcher starts one per
child, gRPC and aiohttp start their own); a lock another thread held at the fork (the import lock,
a logging lock, malloc's) stays locked forever in the child, and the subprocess documentation calls
``preexec_fn`` unsafe with threads for that reason. Here ``prctl`` runs in a fresh single-threaded
interpreter instead, for the price of one more interpreter start per service.

This module imports only the standard library: it runs before every service, so it stays light.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1

SUPPORTED = sys.platform.startswith("linux")
UNSUPPORTED_REASON = (
    f"the parent-death signal (prctl PR_SET_PDEATHSIG) is Linux-only, and this is {sys.platform}"
)


def command(parent_pid: int, module: str) -> list[str]:
    """The command that runs ``python -m <module>`` so that it gets SIGTERM when ``parent_pid`` dies.

    Args:
        parent_pid: The pid of the process that starts the command, from the thread that lives as
            long as it does: the kernel sends the signal when the *thread* that forked exits.
        module: The service's module, as for ``python -m``.

    Returns:
        The command; without the wrapper on a platform that lacks the signal (see ``SUPPORTED``).
    """
    if not SUPPORTED:
        return [sys.executable, "-m", module]
    return [sys.executable, "-m", "local_stack.child", str(parent_pid), module]


def set_parent_death_signal(sig: signal.Signals) -> None:
    """Asks the kernel to send ``sig`` to this process when its parent (thread) exits.

    Raises:
        OSError: ``prctl`` refused.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    if libc.prctl(PR_SET_PDEATHSIG, int(sig)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or not arguments[0].isdigit():
        sys.exit("usage: python -m local_stack.child <parent pid> <module>")
    parent_pid, module = int(arguments[0]), arguments[1]
    set_parent_death_signal(signal.SIGTERM)
    # local_stack may have died between the fork and the prctl above: no signal comes then, and this
    # process already has another parent. Exit like a service that got the signal.
    if os.getppid() != parent_pid:
        sys.exit(128 + signal.SIGTERM)
    os.execv(sys.executable, [sys.executable, "-m", module])


if __name__ == "__main__":
    main()
