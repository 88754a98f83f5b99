"""graphql-core's execution, with a series' points (and an auction's lots) completed in bulk and in slices.

graphql-core completes a list of objects item by item and field by field (a resolver call, a
resolve-info object, a completion, a serialization for each of a point's six fields): ~25 us a
point on an idle core, so 20,000 points held the event loop for 0.5 s and more. A point is six
scalars read off a plain object, so this completes the points of a series directly: for each point,
each selected field's value serialized by that field's own GraphQL scalar or enum, under its
response key, as graphql-core would have (a null left null where the field may be null); 500 points
at a time, returning to the event loop between slices. Only fields read off the object qualify (no
resolver, arguments or field extensions of their own; this schema's extensions have no ``resolve``
hook that would be skipped); any other selection is completed the general way. The per-lot table
(15 fields a lot, 500 lots an auction) is completed the same way.
"""

from __future__ import annotations

import asyncio
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    get_nullable_type,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Points completed between two returns to the event loop (~1-2 ms of work on an idle core).
POINTS_PER_SLICE = 500

# A response key, the Python attribute its value is read from (None: a constant, __typename's),
# and what turns that attribute's value into the response's.
_Column = tuple[str, str | None, Callable[[Any], Any]]


class PointSeries(Sequence[Any]):
    """The items of one list field completed in bulk (``ViewerAnalytics.points``, ``Auction.lots``),
    each read only when completed.

    ``items`` are objects with an attribute per field of the item type (named as the Python
    fields of that type); ``to_object`` builds the type's object for the general path.
    """

    def __init__(self, items: Sequence[Any], to_object: Callable[[Any], Any]) -> None:
        self.items = items
        self._to_object = to_object

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._to_object(item) for item in self.items[index]]
        return self._to_object(self.items[index])


class AnalyticsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Completes a :class:`PointSeries` in bulk; everything else as graphql-core does."""

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: list[FieldDetails],
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        if isinstance(result, PointSeries):
            item_type = get_nullable_type(return_type.of_type)
            columns = None
            if isinstance(item_type, GraphQLObjectType):
                columns = self._leaf_columns(item_type, field_details_list)
            if columns is not None:
                return _complete_in_slices(result.items, columns)
        return super().complete_list_value(
            return_type,
            field_details_list,
            info,
            path,
            result,
            position_context,
        )

    def _leaf_columns(
        self, item_type: GraphQLObjectType, field_details_list: list[FieldDetails]
    ) -> list[_Column] | None:
        """For each response key the points' selection asks for, how to produce its value; None
        when the selection asks for anything else than scalar fields without arguments."""
        grouped, new_defer_usages, _forbidden = self.collect_subfields(item_type, field_details_list)
        if new_defer_usages:
            return None
        columns: list[_Column] = []
        for key, details in grouped.items():
            name = details[0].node.name.value
            if name == "__typename":
                columns.append((key, None, _constant(item_type.name)))
                continue
            field = item_type.fields.get(name)
            if field is None or field.args:
                return None
            leaf = get_nullable_type(field.type)
            # Strawberry keeps the field's definition on the GraphQL field: its Python name, and
            # whether a resolver of its own computes it (then it is not read off the object).
            definition = field.extensions.get("strawberry-definition")
            if (
                not isinstance(leaf, GraphQLScalarType | GraphQLEnumType)
                or definition is None
                or definition.base_resolver is not None
                or definition.extensions
            ):
                return None
            serialize = leaf.serialize if isinstance(leaf, GraphQLEnumType) else _fast_serializer(leaf)
            if not isinstance(field.type, GraphQLNonNull):
                serialize = _null_or(serialize)
            columns.append((key, definition.python_name, serialize))
        return columns


def _null_or(serialize: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A nullable field's serializer: graphql-core completes a None as null, never serializing it."""
    return lambda value: None if value is None else serialize(value)


def _constant(value: str) -> Callable[[Any], Any]:
    return lambda _item: value


def _fast_serializer(scalar: GraphQLScalarType) -> Callable[[Any], Any]:
    """``scalar.serialize``, skipped for values it would return unchanged: an exact ``int`` within
    32 bits for ``Int``, a finite exact ``float`` for ``Float``. graphql-core's general coercion
    (bool, str, numeric objects) costs ~6x the dictionary lookup itself; any other value still
    takes it, so the result and its errors are graphql-core's own."""
    serialize = scalar.serialize
    if scalar is GraphQLInt:

        def serialize_int(value: Any) -> Any:
            if type(value) is int and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT:
                return value
            return serialize(value)

        return serialize_int
    if scalar is GraphQLFloat:

        def serialize_float(value: Any) -> Any:
            if type(value) is float and math.isfinite(value):
                return value
            return serialize(value)

        return serialize_float
    return serialize


def _row_reader(attributes: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """Reads every column of an item as one tuple (one attrgetter call, not one getattr each)."""
    if len(attributes) == 1:
        (attribute,) = attributes
        return lambda item: (getattr(item, attribute),)
    return operator.attrgetter(*attributes)


async def _complete_in_slices(items: Sequence[Any], columns: list[_Column]) -> list[dict[str, Any]]:
    keys = [key for key, _attribute, _serialize in columns]
    serializers = [serialize for _key, _attribute, serialize in columns]
    # A constant column reads the item's class, which its serializer ignores.
    read = _row_reader([attribute or "__class__" for _key, attribute, _serialize in columns])
    completed: list[dict[str, Any]] = []
    for start in range(0, len(items), POINTS_PER_SLICE):
        if start:
            await asyncio.sleep(0)
        completed.extend(
            {
                key: serialize(value)
                for key, serialize, value in zip(keys, serializers, read(item), strict=True)
            }
            for item in items[start : start + POINTS_PER_SLICE]
        )
    return completed
