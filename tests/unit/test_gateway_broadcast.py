"""Coalescing: at most one update per room per interval, always ending on the true counts."""

from __future__ import annotations

import asyncio

from socket_gateway.live.broadcast import CountBroadcaster
from socket_gateway.live.rooms import RoomCounts, RoomRegistry

INTERVAL = 0.05


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, RoomCounts, float]] = []

    async def __call__(self, auction_id: str, counts: RoomCounts) -> None:
        self.sent.append((auction_id, counts, asyncio.get_running_loop().time()))


async def test_a_lone_change_goes_out_at_once() -> None:
    registry, recorder = RoomRegistry(), Recorder()
    broadcaster = CountBroadcaster(registry, recorder, interval_seconds=60.0)
    registry.join("s1", "a1", "v1")
    broadcaster.room_changed("a1")
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    assert [(room, counts) for room, counts, _ in recorder.sent] == [("a1", RoomCounts(1, 1))]
    await broadcaster.close()


async def test_a_join_storm_costs_two_updates_ending_on_the_truth() -> None:
    registry, recorder = RoomRegistry(), Recorder()
    broadcaster = CountBroadcaster(registry, recorder, INTERVAL)
    registry.join("s0", "a1", "v0")
    broadcaster.room_changed("a1")
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    for i in range(1, 100):
        registry.join(f"s{i}", "a1", f"v{i % 40}")
        broadcaster.room_changed("a1")
        if i % 10 == 0:
            await asyncio.sleep(0)  # let the loop run between joins, as real handlers would
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    counts = [counts for _, counts, _ in recorder.sent]
    assert counts[-1] == RoomCounts(100, 40)
    assert len(counts) == 2
    times = [at for _, _, at in recorder.sent]
    assert times[1] - times[0] >= INTERVAL * 0.99
    await broadcaster.close()


async def test_nothing_is_sent_when_the_counts_return_to_what_the_room_was_told() -> None:
    registry, recorder = RoomRegistry(), Recorder()
    broadcaster = CountBroadcaster(registry, recorder, INTERVAL)
    registry.join("s1", "a1", "v1")
    broadcaster.room_changed("a1")
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    registry.join("s2", "a1", "v2")
    broadcaster.room_changed("a1")
    registry.leave("s2")
    broadcaster.room_changed("a1")
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    assert [counts for _, counts, _ in recorder.sent] == [RoomCounts(1, 1)]
    await broadcaster.close()


async def test_rooms_are_coalesced_independently_and_forgotten_when_empty() -> None:
    registry, recorder = RoomRegistry(), Recorder()
    broadcaster = CountBroadcaster(registry, recorder, INTERVAL)
    registry.join("s1", "a1", None)
    registry.join("s2", "a2", None)
    broadcaster.room_changed("a1")
    broadcaster.room_changed("a2")
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    assert sorted(room for room, _, _ in recorder.sent) == ["a1", "a2"]
    registry.leave("s1")
    broadcaster.room_changed("a1")
    await asyncio.wait_for(broadcaster.wait_idle(), 5)
    # Nobody is left in a1 to tell; the room's state is dropped rather than kept forever.
    assert len(recorder.sent) == 2
    assert broadcaster.remembered_rooms == 1
    await broadcaster.close()
