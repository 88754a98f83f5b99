"""docs/graphql_api.md lists the schema as the code builds it."""

from __future__ import annotations

from pathlib import Path

from graphql_api.schema import create_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "graphql_api.md"


def test_documented_schema_is_the_schema() -> None:
    text = DOC.read_text()
    start = text.index("```graphql\n") + len("```graphql\n")
    documented = text[start : text.index("```", start)]
    built = create_schema(max_depth=5, max_tokens=1000, max_aliases=15).as_str()
    assert documented.strip() == built.strip(), "regenerate the listing: print(create_schema(...).as_str())"
