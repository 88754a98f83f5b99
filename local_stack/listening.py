"""Whether a given process itself listens on a TCP port, so local_stack trusts its own child, not the port.

A port that answers proves only that *something* listens there: another copy of the stack, or any
other program, can hold it while local_stack's own child has failed to bind it. On Linux the kernel
says which sockets a process holds (``/proc/<pid>/fd``) and which of them listen on which port
(``/proc/<pid>/net/tcp`` and ``tcp6``, in the process's own network namespace).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# /proc/net/tcp's state column: 0A is TCP_LISTEN (include/net/tcp_states.h).
_LISTEN = "0A"


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds a socket listening on TCP ``port``.

    Returns:
        ``None`` where this cannot be known (not Linux, or /proc not readable); ``False`` also when
        the process has exited.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        inodes = _socket_inodes(pid)
    except FileNotFoundError:
        return False
    except PermissionError:
        return None
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            # "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
            fields = row.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == _LISTEN and fields[9] in inodes:
                return True
    return False


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    for entry in os.scandir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(entry.path)
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes
