"""The indexed room managers keep python-socketio's tables exactly as python-socketio keeps them."""

from __future__ import annotations

import itertools
from typing import Any

import socketio  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio.base_manager import BaseManager  # type: ignore[import-untyped]

from socket_gateway.live.room_index import IndexedManager

SOCKETS = 6
ROOMS = ["auction:a", "auction:b", "auction:c"]

operation = st.one_of(
    st.tuples(st.just("connect"), st.integers(0, SOCKETS - 1)),
    st.tuples(st.just("enter"), st.integers(0, SOCKETS - 1), st.sampled_from(ROOMS)),
    st.tuples(st.just("leave"), st.integers(0, SOCKETS - 1), st.sampled_from(ROOMS)),
    st.tuples(st.just("pre_disconnect"), st.integers(0, SOCKETS - 1)),
    st.tuples(st.just("disconnect"), st.integers(0, SOCKETS - 1)),
    st.tuples(st.just("close"), st.sampled_from(ROOMS)),
)


def manager(kind: type[Any]) -> Any:
    """A manager on a real server whose session ids are numbered, so two managers can be compared."""
    server = socketio.AsyncServer(async_mode="aiohttp")
    numbers = itertools.count()
    server.eio.generate_id = lambda: f"sid{next(numbers)}"
    managed = kind()
    managed.set_server(server)
    return managed


def connect(managed: Any, eio_sid: str) -> str:
    # AsyncManager's own pre_connect/connect are coroutines around these.
    sid: str = BaseManager.pre_connect(managed, eio_sid, "/")
    BaseManager.connect(managed, sid, "/")
    return sid


def apply(managed: Any, sids: dict[int, str], step: tuple[Any, ...]) -> None:
    name, target = step[0], step[1]
    sid = sids.get(target) if isinstance(target, int) else None
    if name == "connect" and target not in sids:
        sids[target] = connect(managed, f"eio{target}")
    elif name == "enter" and sid is not None:
        managed.basic_enter_room(sid, "/", step[2])
    elif name == "leave" and sid is not None:
        managed.basic_leave_room(sid, "/", step[2])
    elif name == "pre_disconnect" and sid is not None:
        managed.pre_disconnect(sid, "/")
    elif name == "disconnect" and sid is not None:
        managed.basic_disconnect(sid, "/")
        del sids[target]
    elif name == "close":
        managed.basic_close_room(target, "/")


def tables(managed: Any) -> dict[str, Any]:
    return {
        "rooms": {
            namespace: {room: dict(members) for room, members in rooms.items()}
            for namespace, rooms in managed.rooms.items()
        },
        "pending_connect": managed.pending_connect,
        "pending_disconnect": managed.pending_disconnect,
        "callbacks": managed.callbacks,
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=40))
def test_any_sequence_of_room_operations_leaves_the_same_tables_as_python_socketio(
    steps: list[tuple[Any, ...]],
) -> None:
    stock, indexed = manager(socketio.AsyncManager), manager(IndexedManager)
    stock_sids: dict[int, str] = {}
    indexed_sids: dict[int, str] = {}
    for step in steps:
        apply(stock, stock_sids, step)
        apply(indexed, indexed_sids, step)
        assert tables(indexed) == tables(stock)
        for sid in indexed_sids.values():
            assert sorted(indexed.get_rooms(sid, "/")) == sorted(stock.get_rooms(sid, "/"))
    # The index holds nothing for sockets that are gone.
    assert indexed.indexed_sockets == len(indexed_sids)


def test_a_disconnect_leaves_every_room_of_that_socket_and_no_other() -> None:
    indexed = manager(IndexedManager)
    staying = connect(indexed, "eio-stay")
    leaving = connect(indexed, "eio-leave")
    for sid in (staying, leaving):
        indexed.basic_enter_room(sid, "/", "auction:a")
    indexed.basic_disconnect(leaving, "/")
    assert dict(indexed.rooms["/"]["auction:a"]) == {staying: "eio-stay"}
    assert leaving not in indexed.rooms["/"]
    assert sorted(indexed.get_rooms(staying, "/")) == sorted([staying, "auction:a"])
