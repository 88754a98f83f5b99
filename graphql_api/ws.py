"""graphql-transport-ws on /graphql: the token from ``connection_init``, the idle timeout, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from datetime import timedelta
from typing import Any

import jwt
from graphql import GraphQLError, GraphQLSyntaxError, OperationDefinitionNode, OperationType, parse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import NextMessage, SubscribeMessage

from graphql_api.auth import LEEWAY_SECONDS, InvalidToken, Principal, TokenVerifier, bearer_token
from graphql_api.context import Context
from graphql_api.subscriptions.shared_events import SharedSubscriber, subscriber_context

logger = logging.getLogger(__name__)

# graphql-transport-ws leaves 4400-4499 to the protocol; an idle connection is closed like one that
# never initialised, and a stopping server says "going away".
IDLE_CLOSE_CODE = 4408
GOING_AWAY_CODE = 1001
# A token that expires while its WebSocket is open ends it as a bad token would have refused it.
EXPIRED_CLOSE_CODE = 4403
NO_TOKEN = 'send the token in connection_init: {"Authorization": "Bearer <token>"}'
ONLY_SUBSCRIPTIONS = (
    "only subscriptions are served over the WebSocket; send queries and mutations as HTTP POST"
)


def not_a_subscription(query: object, operation_name: object, max_tokens: int) -> bool:
    """Whether the document's chosen operation is a query or a mutation.

    Queries and mutations are answered over HTTP only, where the per-request budget (seconds,
    response bytes) holds. A document that cannot be parsed, or names no operation it has, is left
    for Strawberry to refuse as it does.
    """
    if not isinstance(query, str):
        return False
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLSyntaxError:
        return False
    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [
            node for node in operations if node.name is not None and node.name.value == operation_name
        ]
    if len(operations) != 1:
        return False
    return operations[0].operation is not OperationType.SUBSCRIPTION


def connection_principal(
    params: dict[str, object] | None, verifier: TokenVerifier
) -> tuple[Principal, float | None]:
    """The caller named by ``connection_init``'s payload (``Authorization: Bearer <token>``, any case of
    the key, or ``token: <token>``), and the moment (epoch seconds) the token stops being accepted:
    its ``exp`` plus the leeway every request is given.

    Raises:
        InvalidToken: no token, or one that cannot be trusted (the message is safe to show).
    """
    params = params or {}
    raw = next((value for key, value in params.items() if key.lower() == "authorization"), None)
    token: str | None
    if isinstance(raw, str):
        token = bearer_token(raw)
    elif isinstance(params.get("token"), str):
        token = str(params["token"]).strip() or None
    else:
        token = None
    if token is None:
        raise InvalidToken(NO_TOKEN)
    principal = verifier.verify(token)
    # Verified just above; read again only for its expiry.
    expiry = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return principal, float(expiry) + LEEWAY_SECONDS if isinstance(expiry, int | float) else None


class SharedDataEncoder:
    """Encodes a ``next`` message's data once for all the subscribers that receive the same result.

    Subscribers of one event and document receive the same result object (subscriptions/
    shared_events.py); its JSON is kept for the most recent ``size`` results, and each subscriber's
    message is that text with its own operation id around it.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._recent: OrderedDict[int, tuple[object, str]] = OrderedDict()

    def encode(self, message: object) -> str | None:
        """The message as JSON, or None when it is not a plain ``next`` (encoded the usual way)."""
        if not isinstance(message, dict) or message.get("type") != "next":
            return None
        payload = message.get("payload")
        if not isinstance(payload, dict) or payload.keys() != {"data"}:
            return None
        data = payload["data"]
        entry = self._recent.get(id(data))
        if entry is None or entry[0] is not data:
            entry = (data, json.dumps(data, separators=(",", ":")))
            self._recent[id(data)] = entry
            if len(self._recent) > self._size:
                self._recent.popitem(last=False)
        return f'{{"id":{json.dumps(message["id"])},"type":"next","payload":{{"data":{entry[1]}}}}}'


class _OperationNext:
    """Sends ``next`` messages of one operation as Strawberry's own ``send_next`` would for a result
    with data only, while the operation is the one registered under its id and not completed."""

    __slots__ = ("handler", "operation", "operation_id")

    def __init__(self, handler: LimitedTransportWSHandler, operation_id: str) -> None:
        self.handler = handler
        self.operation_id = operation_id
        self.operation: Operation[Context, None] | None = None

    async def __call__(self, data: dict[str, Any] | None) -> bool:
        operation = self.operation
        if (
            operation is None
            or operation.completed
            or self.handler.operations.get(self.operation_id) is not operation
        ):
            return False
        await operation.send_operation_message(
            NextMessage(id=self.operation_id, type="next", payload={"data": data})
        )
        return True


class OpenConnections:
    """The WebSocket connections being served, so that a stop can close them at once."""

    def __init__(self) -> None:
        self._handlers: set[LimitedTransportWSHandler] = set()

    def add(self, handler: LimitedTransportWSHandler) -> None:
        self._handlers.add(handler)

    def discard(self, handler: LimitedTransportWSHandler) -> None:
        self._handlers.discard(handler)

    def __len__(self) -> int:
        return len(self._handlers)

    async def close_all(self) -> None:
        """Closes every connection with 1001 (going away): their clients reconnect elsewhere."""
        handlers = list(self._handlers)
        await asyncio.gather(
            *(handler.websocket.close(GOING_AWAY_CODE, "server stopping") for handler in handlers),
            return_exceptions=True,
        )


class LimitedTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler, closing a connection that holds no operation for the
    idle timeout (``connection_init_wait_timeout``: one value for both, a connection that never
    initialises and one that subscribes to nothing are both idle)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connections = getattr(self.view, "connections", None)
        assert isinstance(connections, OpenConnections), "the view keeps the open connections"
        self._connections = connections
        self._operations_changed = asyncio.Event()
        self._idle_task: asyncio.Task[None] | None = None
        self._expiry_task: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        self._connections.add(self)
        try:
            await super().handle()
        finally:
            self._connections.discard(self)
            for task in (self._idle_task, self._expiry_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._idle_task is None:
            self._idle_task = asyncio.create_task(self._close_when_idle())
            expires_at = self.context.token_expires_at
            if expires_at is not None:
                self._expiry_task = asyncio.create_task(self._close_when_expired(expires_at))

    async def _close_when_expired(self, expires_at: float) -> None:
        # A moment of the wall clock, with no event to wait for.
        await asyncio.sleep(max(0.0, expires_at - self.context.clock()))
        await self.websocket.close(EXPIRED_CLOSE_CODE, "token expired")

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload: Any = message.get("payload")
        if (
            self.connection_acknowledged
            and isinstance(payload, dict)
            and not_a_subscription(
                payload.get("query"),
                payload.get("operationName"),
                getattr(self.view, "max_query_tokens", 1000),
            )
        ):
            error = GraphQLError(ONLY_SUBSCRIPTIONS, extensions={"code": "BAD_USER_INPUT"})
            await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
            return
        # The operation's task (created by Strawberry in there) inherits its SharedSubscriber.
        sender = _OperationNext(self, message["id"])
        undo = subscriber_context(SharedSubscriber(sender))
        try:
            await super().handle_subscribe(message)
        finally:
            undo()
        sender.operation = self.operations.get(message["id"])
        self._operations_changed.set()

    def forget_id(self, id: str) -> None:
        super().forget_id(id)
        self._operations_changed.set()

    async def cleanup_operation(self, operation_id: str) -> None:
        await super().cleanup_operation(operation_id)
        self._operations_changed.set()

    @property
    def _idle_seconds(self) -> float:
        timeout: timedelta = self.connection_init_wait_timeout
        return timeout.total_seconds()

    async def _close_when_idle(self) -> None:
        while True:
            self._operations_changed.clear()
            if self.operations:
                await self._operations_changed.wait()
                continue
            try:
                await asyncio.wait_for(self._operations_changed.wait(), self._idle_seconds)
            except TimeoutError:
                if not self.operations:
                    await self.websocket.close(
                        IDLE_CLOSE_CODE, f"idle: no subscription for {self._idle_seconds:g} s"
                    )
                    return
