"""One execution per subscription event and document, shared by every subscriber that receives it.

graphql-core executes a subscription's selection set once per event per subscriber: 1,000 subscribers
of one auction cost 1,000 executions of the same document on the same event (most of the API's CPU
per delivered update; docs/benchmarks.md, "GraphQL subscriptions"). An event whose result cannot
depend on who receives it (a :class:`SharedEvent`: the same object handed to every subscriber, whose
fields read only the event itself) is executed once per document and variables, and the result is
handed to the other subscribers as it is, without building an executor for them. Anything else is
executed as graphql-core does.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from graphql import ExecutionResult, OperationType

from graphql_api.execution import AnalyticsExecutionContext

_UNSHAREABLE = object()


class SharedEvent:
    """Mixed into a subscription's event type whose fields read nothing but the event itself."""

    __slots__ = ()
    # Set per instance by subclasses (a dataclass field): per (document id, variables), the document's
    # operation (held, so that its id cannot be reused while the event lives) and its result.
    shared_results: dict[Hashable, tuple[Any, ExecutionResult]]


class _Replay:
    """Stands in for a per-event executor: its "execution" is the result already computed."""

    __slots__ = ("_result",)

    def __init__(self, result: ExecutionResult) -> None:
        self._result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self._result


class SharedEventExecutionContext(AnalyticsExecutionContext):
    """The API's execution context, executing a :class:`SharedEvent` once per document and variables."""

    _shared_key: Any = None

    def _event_key(self) -> Hashable | None:
        # Computed once per subscription (per-event executors are copies of this one).
        key = self._shared_key
        if key is None:
            try:
                key = (id(self.operation), tuple(sorted(self.variable_values.coerced.items())))
                hash(key)
            except TypeError:
                key = _UNSHAREABLE
            self._shared_key = key
        return None if key is _UNSHAREABLE else key

    def build_per_event_executor(self, payload: Any) -> Any:
        if isinstance(payload, SharedEvent) and self.operation.operation is OperationType.SUBSCRIPTION:
            key = self._event_key()
            cached = payload.shared_results.get(key) if key is not None else None
            if cached is not None and cached[0] is self.operation:
                return _Replay(cached[1])
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        event = self.root_value
        result = super().execute_operation(serially)
        if isinstance(event, SharedEvent) and self.operation.operation is OperationType.SUBSCRIPTION:
            key = self._event_key()
            # Only a finished, faultless result is shared (an error is each subscriber's own to report).
            if key is not None and isinstance(result, ExecutionResult) and not result.errors:
                event.shared_results[key] = (self.operation, result)
        return result
