"""The dashboard's vendored JavaScript and licences are the pinned npm packages' files, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphql_api.graphiql import CDN_FILES
from tests.unit.test_graphiql_vendor import LICENSES as GRAPHIQL_LICENSES

REPO = Path(__file__).resolve().parents[2]
VENDOR = REPO / "graphql_api" / "dashboard" / "static" / "vendor"
# Vendored file -> its source in node_modules (installed by `npm ci` from package-lock.json). The
# Socket.IO client's browser build bundles engine.io-client, engine.io-parser, socket.io-parser and
# @socket.io/component-emitter, so their licences travel with it.
VENDORED = {
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "LICENSE.socket.io-client": "socket.io-client/LICENSE",
    "LICENSE.engine.io-client": "engine.io-client/LICENSE",
    "LICENSE.engine.io-parser": "engine.io-parser/LICENSE",
    "LICENSE.socket.io-parser": "socket.io-parser/LICENSE",
    "LICENSE.component-emitter": "@socket.io/component-emitter/LICENSE",
}


@pytest.mark.parametrize(("vendored", "source"), sorted(VENDORED.items()))
def test_vendored_file_is_the_installed_packages_file(vendored: str, source: str) -> None:
    installed = REPO / "node_modules" / source
    assert installed.exists(), f"{installed} is missing: run scripts/setup (npm ci)"
    assert (VENDOR / vendored).read_bytes() == installed.read_bytes(), (
        f"{VENDOR.relative_to(REPO)}/{vendored} differs from node_modules/{source}: after changing "
        f"the pin, copy it: cp node_modules/{source} {VENDOR.relative_to(REPO)}/{vendored}"
    )


def test_installed_packages_are_the_pinned_versions() -> None:
    lock = json.loads((REPO / "package-lock.json").read_text())
    for source in VENDORED.values():
        package = source.split("/dist/")[0].removesuffix("/LICENSE")
        installed = json.loads((REPO / "node_modules" / package / "package.json").read_text())
        assert installed["version"] == lock["packages"][f"node_modules/{package}"]["version"], package


def test_nothing_else_is_vendored() -> None:
    # GraphiQL's files share the directory (checked by tests/unit/test_graphiql_vendor.py).
    graphiql = [*CDN_FILES.values(), *GRAPHIQL_LICENSES]
    assert sorted(path.name for path in VENDOR.iterdir()) == sorted([*VENDORED, *graphiql])
