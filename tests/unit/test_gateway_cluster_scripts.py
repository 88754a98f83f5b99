"""The cluster's Lua scripts as files (socket_gateway/cluster/scripts/): every file loaded, none missing."""

from __future__ import annotations

from dataclasses import fields
from importlib import resources

from socket_gateway.cluster.scripts import ClusterScripts


def test_every_lua_file_is_a_script_or_the_common_functions() -> None:
    folder = resources.files("socket_gateway.cluster.scripts")
    files = {entry.name for entry in folder.iterdir() if entry.name.endswith(".lua")}
    assert files == {"common.lua"} | {f"{field.name}.lua" for field in fields(ClusterScripts)}


def test_the_common_functions_come_first_where_a_script_calls_them() -> None:
    scripts = ClusterScripts.load()
    common = resources.files("socket_gateway.cluster.scripts").joinpath("common.lua").read_text()
    for field in fields(ClusterScripts):
        source = getattr(scripts, field.name)
        calls_common = any(
            f"{name}(" in source.removeprefix(common)
            for name in ("room_counts", "set_contribution", "remove_viewer", "now_ms", "gate")
        )
        assert source.startswith(common) == calls_common, field.name
