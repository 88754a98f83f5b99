"""One SQLite write transaction, for every service that writes a SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """A write transaction around the block: committed when it ends, rolled back when it raises.

    For a connection in autocommit mode (``isolation_level=None``), whose own context manager opens no
    transaction. SQLite rolls a transaction back by itself on some errors (a full disk, an I/O error);
    a ROLLBACK then fails with "no transaction is active", which would replace the error that says what
    went wrong. So the rollback runs only while a transaction is still open, and never hides the cause.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
