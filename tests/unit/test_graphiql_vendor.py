"""GraphiQL's vendored files are the pinned npm packages' files, byte for byte, and exactly the files the
installed Strawberry's GraphiQL page asks unpkg for (same versions, same integrity hashes)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from strawberry.http.ides import get_graphql_ide_html

from graphql_api.graphiql import (
    CDN_FILES,
    VENDOR_DIR,
    VENDOR_PATH,
    GraphiQLNotVendored,
    offline_graphiql_html,
)

REPO = Path(__file__).resolve().parents[2]
UNPKG = re.compile(r"^https://unpkg\.com/(?P<package>(?:@[^/@]+/)?[^/@]+)@(?P<version>[^/]+)/(?P<path>.+)$")
# Licences of the packages whose code the vendored files hold (graphiql-explorer is bundled into the
# explorer plugin's UMD build; the plugin's own package ships no licence file, its package.json says MIT).
LICENSES = {
    "LICENSE.react": "react/LICENSE",
    "LICENSE.react-dom": "react-dom/LICENSE",
    "LICENSE.js-cookie": "js-cookie/LICENSE",
    "LICENSE.graphiql": "graphiql/LICENSE",
    "LICENSE.graphiql-explorer": "@graphiql/plugin-explorer/node_modules/graphiql-explorer/LICENSE",
}


def unpkg_parts(cdn_url: str) -> tuple[str, str, str]:
    match = UNPKG.match(cdn_url)
    assert match, cdn_url
    return match["package"], match["version"], match["path"]


def sri_sha384(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


@pytest.mark.parametrize(("cdn_url", "vendored"), sorted(CDN_FILES.items()))
def test_vendored_file_is_the_pinned_installed_packages_file(cdn_url: str, vendored: str) -> None:
    package, version, path = unpkg_parts(cdn_url)
    installed = REPO / "node_modules" / package
    assert installed.exists(), f"{installed} is missing: run scripts/setup (npm ci)"
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"][package]
    locked = json.loads((REPO / "package-lock.json").read_text())["packages"][f"node_modules/{package}"]
    assert version == pinned == locked["version"], f"{package}: Strawberry's page wants {version}"
    assert json.loads((installed / "package.json").read_text())["version"] == version
    assert (VENDOR_DIR / vendored).read_bytes() == (installed / path).read_bytes(), (
        f"{vendored} differs from node_modules/{package}/{path}: after changing the pin, copy it: "
        f"cp node_modules/{package}/{path} {VENDOR_DIR.relative_to(REPO)}/{vendored}"
    )


@pytest.mark.parametrize(("vendored", "source"), sorted(LICENSES.items()))
def test_licence_is_the_installed_packages(vendored: str, source: str) -> None:
    assert (VENDOR_DIR / vendored).read_bytes() == (REPO / "node_modules" / source).read_bytes()


def test_strawberrys_page_loads_exactly_the_vendored_files_with_their_integrity() -> None:
    page = get_graphql_ide_html("graphiql")
    assert sorted(re.findall(r"https://unpkg\.com/[^\s\"']+", page)) == sorted(CDN_FILES)
    for cdn_url, vendored in CDN_FILES.items():
        # The page's own Subresource Integrity hash, right after the address: the browser checks it.
        integrity = re.search(re.escape(cdn_url) + r'"\s+integrity="([^"]+)"', page)
        assert integrity, cdn_url
        assert sri_sha384((VENDOR_DIR / vendored).read_bytes()) == integrity[1], vendored


def test_offline_page_names_only_vendored_paths() -> None:
    page = offline_graphiql_html(get_graphql_ide_html("graphiql"))
    assert "unpkg" not in page
    for vendored in CDN_FILES.values():
        assert f'"{VENDOR_PATH}{vendored}"' in page


def test_a_page_loading_anything_else_is_refused() -> None:
    page = get_graphql_ide_html("graphiql")
    extra = page.replace("</head>", '<script src="https://cdn.jsdelivr.net/npm/x@1/x.js"></script></head>')
    with pytest.raises(GraphiQLNotVendored, match="jsdelivr"):
        offline_graphiql_html(extra)
    older = page.replace("graphiql@3.8.3", "graphiql@3.8.2")
    with pytest.raises(GraphiQLNotVendored, match="no longer loads"):
        offline_graphiql_html(older)
