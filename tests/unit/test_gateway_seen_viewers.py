"""The snapshots' unique-viewer sketches: who the real registry saw in each room, per interval."""

from __future__ import annotations

import datasketches

from service_common.timing import SnapshotTiming
from service_common.viewer_sketches import CPC_LG_K
from socket_gateway.live.rooms import RoomRegistry
from socket_gateway.snapshots.aggregation import MinuteSnapshot, SampleSchedule, SnapshotAggregator
from socket_gateway.snapshots.seen_viewers import SeenViewers

T0 = 1_800_000_000
SCHEDULE = SampleSchedule(SnapshotTiming(60, 5))


def distinct(raw: bytes) -> int:
    """The sketch's count (exact at these sizes: CPC at lg_k 11 rounds to it below a few hundred)."""
    if not raw:
        return 0
    sketch = datasketches.cpc_sketch.deserialize(raw)
    assert sketch.lg_k == CPC_LG_K
    estimate: float = sketch.get_estimate()
    return round(estimate)


class Gateway:
    """The registry, the sketches and the aggregator wired as the gateway wires them alone."""

    def __init__(self, *, verified_ids: bool) -> None:
        self.registry = RoomRegistry()
        self.aggregator = SnapshotAggregator(
            SCHEDULE, "gw-1", SeenViewers(self.registry, verified_ids=verified_ids)
        )

    def minute(self, start: int, between_ticks: dict[int, list[tuple[str, ...]]]) -> list[MinuteSnapshot]:
        """Samples the minute from ``start``; before tick k, runs ``between_ticks[k]`` (join/leave)."""
        closed = []
        for k in range(1, 13):
            for action in between_ticks.get(k, []):
                if action[0] == "join":
                    self.registry.join(action[1], action[2], action[3] if len(action) > 3 else None)
                else:
                    self.registry.leave(action[1])
            closed += self.aggregator.sample(
                start + 5 * k, self.registry.active_rooms(), self.registry.counts
            )
        return closed


def test_a_viewers_tabs_count_once_and_each_socket_without_an_id_counts_alone() -> None:
    # No viewer tokens: ids are what the clients claimed, so every viewer is anonymous.
    gateway = Gateway(verified_ids=False)
    (snapshot,) = gateway.minute(
        T0,
        {
            1: [("join", "s1", "a1", "v1"), ("join", "s2", "a1", "v1"), ("join", "s3", "a1")],
            # Came and went between two ticks: never in a sample, still seen.
            4: [("join", "s4", "a1", "v2"), ("leave", "s4")],
            6: [("join", "s5", "a1"), ("leave", "s3")],
        },
    )
    assert (snapshot.identified_sketch, distinct(snapshot.anonymous_sketch)) == (b"", 4)  # v1, v2, s3, s5
    # The live count at the minute's end, from the same registry: v1 and s5.
    assert snapshot.unique_viewers == 2


def test_verified_ids_are_sketched_as_identified_viewers() -> None:
    gateway = Gateway(verified_ids=True)
    (snapshot,) = gateway.minute(
        T0, {1: [("join", "s1", "a1", "sub-1"), ("join", "s2", "a1", "sub-2"), ("join", "s3", "a1", "sub-1")]}
    )
    assert (distinct(snapshot.identified_sketch), snapshot.anonymous_sketch) == (2, b"")


def test_each_interval_sketches_who_was_in_the_room_at_its_start_and_who_joined_it() -> None:
    gateway = Gateway(verified_ids=True)
    first = gateway.minute(
        T0,
        {
            1: [("join", "s1", "a1", "stays"), ("join", "s2", "a1", "leaves")],
            3: [("join", "s3", "a1", "moves")],
            5: [("leave", "s2"), ("join", "s3", "a2", "moves")],  # s3 switches rooms
        },
    )
    second = gateway.minute(T0 + 60, {2: [("join", "s4", "a2", "late")], 7: [("leave", "s1")]})
    third = gateway.minute(T0 + 120, {})
    seen = {(s.minute_start, s.auction_id): distinct(s.identified_sketch) for s in first + second + third}
    assert seen == {
        (T0, "a1"): 3,  # stays, leaves, moves
        (T0, "a2"): 1,  # moves
        (T0 + 60, "a1"): 1,  # stays, there when the minute began, until it left
        (T0 + 60, "a2"): 2,  # moves, late
        (T0 + 120, "a1"): 0,  # the empty minute's last snapshot, nobody in it
        (T0 + 120, "a2"): 2,
    }
    # The empty room is forgotten, and so is its sketch: nothing is held for it any more.
    assert gateway.minute(T0 + 180, {})[0].auction_id == "a2"
    assert gateway.aggregator.tracked_rooms == 1


def test_a_room_visited_only_between_two_ticks_still_sends_its_visitor() -> None:
    gateway = Gateway(verified_ids=False)
    (snapshot,) = gateway.minute(T0, {6: [("join", "s1", "brief", "v1"), ("leave", "s1")]})
    assert (snapshot.auction_id, snapshot.peak_viewers, snapshot.sample_count) == ("brief", 0, 7)
    assert distinct(snapshot.anonymous_sketch) == 1
    assert gateway.minute(T0 + 60, {}) == []
    assert gateway.aggregator.tracked_rooms == 0
