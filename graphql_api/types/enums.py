"""The schema's enums: the domain's range presets and bucket widths, exposed by name."""

from __future__ import annotations

import strawberry

from graphql_api import analytics

# strawberry.enum registers the domain enums as they are (it returns the same class), so resolvers
# receive and annotate the domain types themselves; no second enum to keep in step.
RangePreset = analytics.RangePreset
strawberry.enum(
    RangePreset, name="RangePreset", description="A range relative to now; ALL is every stored snapshot."
)

Bucket = analytics.Bucket
strawberry.enum(
    Bucket,
    name="Bucket",
    description="The width of each point's bucket, aligned to the Unix epoch (UTC). "
    "AUTO picks the finest width that keeps the series at or under about 500 points.",
)
