"""One execution per subscription event and document, shared by every subscriber that receives it.

graphql-core executes a subscription's selection set once per event per subscriber: 1,000 subscribers
of one auction cost 1,000 executions of the same document on the same event (most of the API's CPU
per delivered update; docs/benchmarks.md, "GraphQL subscriptions"). An event whose result cannot
depend on who receives it (a :class:`SharedEvent`: the same object handed to every subscriber, whose
fields read only the event itself) is executed once per document and variables, and the result is
handed to the other subscribers as it is, without building an executor for them. Anything else is
executed as graphql-core does.

And delivered once it is known: a subscriber whose document already has its result for an event (a
:class:`SharedSubscriber` of its WebSocket operation, see graphql_api/ws.py) is sent that result's
``next`` message by its field's generator directly, instead of yielding the event through
graphql-core's event stream and Strawberry's per-result path (its extensions' hooks and results, the
result's conversion), which only ever act on errors or add nothing here. The first subscriber of each
event still yields it, and so computes the result the others are sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
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


class SharedSubscriber:
    """One WebSocket operation's way around the per-result path, for the events already executed.

    Made by the WebSocket handler for each operation and reached, from the operation's own task, through
    :func:`current_subscriber`. The execution context notes which shared results are this subscriber's
    (its document and variables); the field's generator calls :meth:`deliver`.

    Args:
        send_data: sends one ``next`` message with this ``data`` to the operation's client (and
            returns False, sending nothing, when the operation is over).
    """

    __slots__ = ("_key", "_operation", "_send_data")

    def __init__(self, send_data: Callable[[dict[str, Any] | None], Awaitable[bool]]) -> None:
        self._send_data = send_data
        self._key: Hashable | None = None
        self._operation: Any = None

    def note(self, key: Hashable, operation: Any) -> None:
        """The (document, variables) key of this subscriber's results, and its parsed operation."""
        self._key, self._operation = key, operation

    async def deliver(self, event: SharedEvent) -> bool:
        """Sends ``event``'s result for this subscriber's document if it is already known; whether it did.

        False: the event must be yielded as usual (its first subscriber, a result with errors, a
        subscriber not yet noted, an operation that is over).
        """
        if self._key is None:
            return False
        cached = event.shared_results.get(self._key)
        if cached is None or cached[0] is not self._operation:
            return False
        return await self._send_data(cached[1].data)


_current_subscriber: ContextVar[SharedSubscriber | None] = ContextVar("shared_subscriber", default=None)


def current_subscriber() -> SharedSubscriber | None:
    """The :class:`SharedSubscriber` of the WebSocket operation running in this task, if any."""
    return _current_subscriber.get()


def subscriber_context(subscriber: SharedSubscriber) -> Callable[[], None]:
    """Makes ``subscriber`` the current one for tasks created from here on; returns the undo."""
    token = _current_subscriber.set(subscriber)
    return lambda: _current_subscriber.reset(token)


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
                self._note_subscriber(key)
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
                self._note_subscriber(key)
        return result

    def _note_subscriber(self, key: Hashable | None) -> None:
        subscriber = _current_subscriber.get()
        if subscriber is not None and key is not None:
            subscriber.note(key, self.operation)
