"""Room counting: connections and distinct viewers stay exact through any sequence of joins and leaves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from socket_gateway.live.rooms import RoomCounts, RoomRegistry


def test_tabs_of_one_viewer_count_as_connections_but_one_unique_viewer() -> None:
    registry = RoomRegistry()
    registry.join("tab-1", "a1", "viewer-1")
    registry.join("tab-2", "a1", "viewer-1")
    registry.join("phone", "a1", "viewer-2")
    registry.join("anon-1", "a1", None)
    registry.join("anon-2", "a1", None)
    # Sockets without a viewer id count as unique each.
    assert registry.counts("a1") == RoomCounts(viewer_count=5, unique_viewers=4)
    registry.leave("tab-1")
    assert registry.counts("a1") == RoomCounts(4, 4)
    registry.leave("tab-2")
    assert registry.counts("a1") == RoomCounts(3, 3)


def test_joining_the_same_room_again_changes_nothing() -> None:
    registry = RoomRegistry()
    assert registry.join("s1", "a1", "v1") == (None, True)
    assert registry.join("s1", "a1", "v1") == (None, False)
    assert registry.counts("a1") == RoomCounts(1, 1)


def test_switching_rooms_leaves_the_old_one_and_empty_rooms_disappear() -> None:
    registry = RoomRegistry()
    registry.join("s1", "a1", "v1")
    assert registry.join("s1", "a2", "v1") == ("a1", True)
    assert registry.counts("a1") == RoomCounts(0, 0)
    assert registry.counts("a2") == RoomCounts(1, 1)
    assert registry.active_rooms() == ["a2"]
    assert registry.leave("s1") == "a2"
    assert registry.leave("s1") is None
    assert registry.room_count == 0
    assert registry.member_count == 0


operation = st.tuples(
    st.sampled_from(["join", "leave"]),
    st.sampled_from([f"s{i}" for i in range(8)]),
    st.sampled_from(["a1", "a2", "a3"]),
    st.sampled_from(["v1", "v2", "v3", None]),
)


@given(st.lists(operation, max_size=200))
def test_counts_match_a_recount_after_any_churn(operations: list[tuple[str, str, str, str | None]]) -> None:
    registry = RoomRegistry()
    # The model: each socket's (room, viewer id), recounted from scratch after every step.
    sockets: dict[str, tuple[str, str | None]] = {}
    for kind, sid, auction_id, viewer_id in operations:
        if kind == "join":
            if sockets.get(sid, ("", None))[0] != auction_id:
                sockets[sid] = (auction_id, viewer_id)
            registry.join(sid, auction_id, viewer_id)
        else:
            sockets.pop(sid, None)
            registry.leave(sid)
        for room in ("a1", "a2", "a3"):
            members = [viewer for room_of, viewer in sockets.values() if room_of == room]
            named = {viewer for viewer in members if viewer is not None}
            expected = RoomCounts(len(members), len(named) + members.count(None))
            assert registry.counts(room) == expected
        assert sorted(registry.active_rooms()) == sorted({room for room, _ in sockets.values()})
