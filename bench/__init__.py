"""Benchmarks, not tests: runnable scripts (``python -m bench.<name>``); figures in docs/benchmarks.md."""
