"""Storage of snapshots and auction settings: one port, two adapters (SQLite embedded, MongoDB)."""
