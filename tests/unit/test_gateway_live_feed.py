"""The live-count feed and one stream's coalescing (issue 18), without sockets: plain objects on a loop."""

from __future__ import annotations

import asyncio

from socket_gateway.live.count_stream import StreamWatcher
from socket_gateway.live.feed import CountFeed
from socket_gateway.live.rooms import EMPTY, RoomCounts


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, RoomCounts]] = []

    def counts_changed(self, auction_id: str, counts: RoomCounts) -> None:
        self.seen.append((auction_id, counts))


def test_the_feed_tells_each_listener_only_its_auctions_and_only_real_changes() -> None:
    feed = CountFeed()
    one, every = Recorder(), Recorder()
    feed.watch(one, ["a"])
    feed.watch(every)
    feed.publish("a", RoomCounts(1, 1))
    feed.publish("a", RoomCounts(1, 1))
    feed.publish("b", RoomCounts(2, 1))
    feed.publish("a", EMPTY)
    assert one.seen == [("a", RoomCounts(1, 1)), ("a", EMPTY)]
    assert every.seen == [("a", RoomCounts(1, 1)), ("b", RoomCounts(2, 1)), ("a", EMPTY)]
    # An auction back at zero is forgotten: what the feed keeps is bounded by the rooms with viewers.
    assert feed.current("a") == EMPTY
    assert "a" not in feed._latest
    feed.unwatch(one)
    feed.unwatch(every)
    assert feed.listeners == 0
    assert not feed._by_auction


def test_publishing_every_rooms_counts_turns_a_missing_auction_into_zero() -> None:
    feed = CountFeed()
    recorder = Recorder()
    feed.watch(recorder)
    feed.publish_all({"a": RoomCounts(3, 2), "b": RoomCounts(1, 1)})
    feed.publish_all({"b": RoomCounts(1, 1)})
    assert recorder.seen[-1] == ("a", EMPTY)
    assert feed.current("b") == RoomCounts(1, 1)


async def test_ten_thousand_changes_nobody_reads_are_one_entry_and_read_as_the_latest() -> None:
    """Proves a stream's queue is bounded by its auctions, not by the changes: a slow consumer gets
    the latest counts."""
    clock = [100.0]
    watcher = StreamWatcher(["a", "b"], 0.5, lambda: clock[0])
    for n in range(10_000):
        watcher.counts_changed("a", RoomCounts(n, n))
    assert watcher.pending == 1
    assert await watcher.next_batch() == [("a", RoomCounts(9_999, 9_999))]


async def test_changes_within_the_interval_are_folded_into_one_update_at_its_end() -> None:
    loop = asyncio.get_running_loop()
    watcher = StreamWatcher(["a"], 0.2, loop.time)
    watcher.sent("a", RoomCounts(1, 1))
    started = loop.time()
    watcher.counts_changed("a", RoomCounts(2, 2))
    watcher.counts_changed("a", RoomCounts(3, 2))
    assert await watcher.next_batch() == [("a", RoomCounts(3, 2))]
    assert loop.time() - started >= 0.2 - 0.01
    # Changed and changed back within an interval: nothing to tell.
    watcher.sent("a", RoomCounts(3, 2))
    watcher.counts_changed("a", RoomCounts(4, 2))
    watcher.counts_changed("a", RoomCounts(3, 2))
    watcher.counts_changed("b", RoomCounts(1, 1))
    assert await asyncio.wait_for(watcher.next_batch(), 1.0) == [("b", RoomCounts(1, 1))]
