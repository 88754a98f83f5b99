"""``python -m simulate``: simulated viewers for a running socket gateway, to watch the system move."""
