"""The cluster's Lua scripts, one ``.lua`` file each, read once when a node's Redis adapter is built."""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources

# Scripts that do not call common.lua's functions are loaded without it.
_STANDALONE = frozenset({"sampler_lease"})


@dataclass(frozen=True, slots=True)
class ClusterScripts:
    """The source of every script, named as its file (``sync`` is ``sync.lua``), common.lua prepended
    where the script uses it. Every update to the shared state is one of these, so each is atomic."""

    sync: str
    drop: str
    sample: str
    heartbeat: str
    members: str
    publish_gate: str
    sampler_lease: str

    @classmethod
    def load(cls) -> ClusterScripts:
        """Reads the files (package data: ``pyproject.toml`` ships them)."""
        folder = resources.files(__package__)
        common = folder.joinpath("common.lua").read_text(encoding="utf-8")
        sources = {}
        for field in fields(cls):
            body = folder.joinpath(f"{field.name}.lua").read_text(encoding="utf-8")
            sources[field.name] = body if field.name in _STANDALONE else common + body
        return cls(**sources)
