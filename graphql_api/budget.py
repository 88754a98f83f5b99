"""The per-request budget: the points a document asks for (counted before anything runs), the bytes
of its response, and its time; each refused with ``extensions.code = "QUERY_BUDGET_EXCEEDED"``."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    get_argument_values,
    get_operation_ast,
    get_variable_values,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension

from graphql_api import analytics

BUDGET_EXCEEDED = "QUERY_BUDGET_EXCEEDED"
# The fields a point has: a point selection asking for more (through aliases) counts once per six.
POINT_FIELDS = 6
# Items of a long list encoded between two returns to the event loop (a few milliseconds of work).
ITEMS_PER_SLICE = 500


@dataclass(frozen=True)
class RequestBudget:
    """What one GraphQL request may cost.

    Attributes:
        max_points: points the document may ask for, over all its ``points`` selections.
        max_response_bytes: size of the JSON response.
        max_seconds: time from reading the request to the response being ready.
        retention_days: how far back ``ALL`` can reach (the ingest service's retention), which
            bounds what a field over ``ALL`` can return.
    """

    max_points: int = 20_000
    max_response_bytes: int = 4 * 1024 * 1024
    max_seconds: float = 10.0
    retention_days: int = 90


def budget_error(budget: str, limit: float, message: str, **extra: Any) -> dict[str, Any]:
    """A GraphQL error (as a response carries it) for a request over one of its budgets."""
    return {
        "message": message,
        "extensions": {"code": BUDGET_EXCEEDED, "budget": budget, "limit": limit, **extra},
    }


def requested_points(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    now: float,
    max_range_seconds: int,
    retention_days: int,
) -> int:
    """How many points the operation asks for: over every ``auction { viewerAnalytics { points } }``,
    the most points that field can return (``analytics.points_bound``), once per ``points`` selection.

    Fields are grouped by response key as execution merges them, through fragments; ``@skip`` and
    ``@include`` are ignored (a skipped field still counts: the bound errs high, never low). A field
    whose arguments the resolver will refuse counts 0. An operation that will not run (invalid
    variables, unknown operation) counts 0: execution refuses it with its own error.
    """
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY or schema.query_type is None:
        return 0
    coerced = get_variable_values(schema, operation.variable_definitions or (), dict(variables or {}))
    if isinstance(coerced, list):
        return 0
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    auction_type = schema.get_type("Auction")
    analytics_field = auction_type.fields["viewerAnalytics"]  # type: ignore[union-attr]
    total = 0
    for auction_nodes in _fields_by_key([operation.selection_set], fragments, "auction"):
        for analytics_nodes in _fields_by_key(_selection_sets(auction_nodes), fragments, "viewerAnalytics"):
            try:
                arguments = get_argument_values(analytics_field, analytics_nodes[0], coerced)
                window = analytics.resolve_window(
                    arguments.get("range"),
                    arguments.get("from"),
                    arguments.get("to"),
                    now=now,
                    max_range_seconds=max_range_seconds,
                )
            except (GraphQLError, analytics.InvalidQuery):
                continue
            bound = analytics.points_bound(
                window, arguments.get("bucket", analytics.Bucket.AUTO), now=now, retention_days=retention_days
            )
            for points_nodes in _fields_by_key(_selection_sets(analytics_nodes), fragments, "points"):
                fields = sum(1 for _ in _fields_by_key(_selection_sets(points_nodes), fragments, None))
                total += bound * max(1, math.ceil(fields / POINT_FIELDS))
    return total


def _selection_sets(nodes: Iterable[FieldNode]) -> list[SelectionSetNode]:
    return [node.selection_set for node in nodes if node.selection_set is not None]


def _fields_by_key(
    selection_sets: Iterable[SelectionSetNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    field_name: str | None,
) -> Iterator[list[FieldNode]]:
    """The field nodes of ``selection_sets`` grouped by response key (fragments expanded), keeping
    the groups of fields named ``field_name`` (all of them for None)."""
    groups: dict[str, list[FieldNode]] = {}

    def collect(selection_set: SelectionSetNode, spread: frozenset[str]) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                groups.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set, spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                # Validation refuses fragment cycles; this guard only keeps the walk finite anyway.
                if name in fragments and name not in spread:
                    collect(fragments[name].selection_set, spread | {name})

    for selection_set in selection_sets:
        collect(selection_set, frozenset())
    for nodes in groups.values():
        if field_name is None or nodes[0].name.value == field_name:
            yield nodes


class PointsBudget(SchemaExtension):
    """Refuses, before execution, a query asking for more points than ``max_points``.

    Counted from the document and its variables alone, so nothing is asked of the ingest service
    for a refused request. The answer is ``data: null`` and one error naming the count and the limit.
    """

    def __init__(self, *, budget: RequestBudget) -> None:
        self._budget = budget

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        if execution.graphql_document is not None and not execution.result:
            points = requested_points(
                execution.schema._schema,
                execution.graphql_document,
                execution.operation_name,
                execution.variables,
                now=context.clock(),
                max_range_seconds=context.max_range_seconds,
                retention_days=self._budget.retention_days,
            )
            if points > self._budget.max_points:
                error = budget_error(
                    "points",
                    self._budget.max_points,
                    f"the query asks for up to {points} points, more than the {self._budget.max_points} "
                    "one request may return; ask for fewer fields, a larger bucket or a shorter range",
                    requested=points,
                )
                execution.result = GraphQLExecutionResult(
                    data=None, errors=[GraphQLError(error["message"], extensions=error["extensions"])]
                )
        yield


class ResponseTooLarge(Exception):
    """The JSON response grew past the byte budget while being encoded."""


async def encode_json_in_slices(value: Any, *, max_bytes: int) -> str:
    """``value`` as compact JSON (what Strawberry sends), encoding long lists a slice at a time and
    returning to the event loop between slices; stops as soon as the text passes ``max_bytes``.

    The result is the text ``json.dumps(value, separators=(",", ":"))`` gives, ASCII only, so its
    length is its size in bytes.

    Raises:
        ResponseTooLarge: the text would be longer than ``max_bytes``.
    """
    parts: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        size += len(text)
        if size > max_bytes:
            raise ResponseTooLarge
        parts.append(text)

    async def encode(item: Any) -> None:
        if isinstance(item, dict):
            emit("{")
            for index, (key, member) in enumerate(item.items()):
                emit(("," if index else "") + json.dumps(key) + ":")
                await encode(member)
            emit("}")
        elif isinstance(item, list) and len(item) > ITEMS_PER_SLICE:
            emit("[")
            for start in range(0, len(item), ITEMS_PER_SLICE):
                text = json.dumps(item[start : start + ITEMS_PER_SLICE], separators=(",", ":"))
                emit(("," if start else "") + text[1:-1])
                await asyncio.sleep(0)
            emit("]")
        else:
            emit(json.dumps(item, separators=(",", ":")))

    await encode(value)
    return "".join(parts)
