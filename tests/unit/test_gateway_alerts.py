"""The alert evaluator's rules on a sequence of count changes: crossings, hysteresis, cooldown, windows."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from socket_gateway.live.alerts import (
    ABOVE,
    BELOW,
    DROP_PERCENT,
    RULES_PER_STEP,
    ZERO_WHILE_LIVE,
    AlertEvaluator,
    Firing,
    WatchedRule,
)
from socket_gateway.live.rooms import RoomCounts
from tests.support import FakeClock


def rule(
    kind: str,
    threshold: int = 0,
    *,
    window: int = 0,
    hysteresis: int = 0,
    cooldown: int = 0,
    unique: bool = False,
) -> WatchedRule:
    return WatchedRule(f"rule-{kind}", "a-1", kind, unique, threshold, window, hysteresis, cooldown)


class Harness:
    def __init__(self, *rules: WatchedRule, start: int = 0, settle_seconds: float | None = None) -> None:
        self.clock = FakeClock(1_000_000.0)
        self.fired: list[Firing] = []
        self.armed: list[tuple[str, bool]] = []
        self.any_fired = asyncio.Event()
        self.now = RoomCounts(start, start)
        self.evaluator = AlertEvaluator(
            self._fire, self.clock, report_armed=lambda rule, armed: self.armed.append((rule.rule_id, armed))
        )
        self.evaluator.set_rules(rules, lambda _auction: self.now, settle_seconds)

    def _fire(self, firing: Firing) -> None:
        self.fired.append(firing)
        self.any_fired.set()

    def counts(self, *values: int, every: float = 1.0, unique: int | None = None) -> list[int]:
        """Feeds the counts one per ``every`` seconds; returns the value of each firing so far."""
        for value in values:
            self.clock.advance(every)
            self.now = RoomCounts(value, value if unique is None else unique)
            self.evaluator.counts_changed("a-1", self.now)
        return [firing.value for firing in self.fired]


def test_above_fires_once_on_the_crossing() -> None:
    harness = Harness(rule(ABOVE, 500))
    assert harness.counts(100, 499, 500) == []
    assert harness.counts(501) == [501]
    assert harness.counts(900, 700, 501, 1_000) == [501]
    (firing,) = harness.fired
    assert (firing.rule_id, firing.auction_id, firing.reference) == ("rule-ABOVE", "a-1", 500)


def test_a_count_hovering_at_the_threshold_does_not_flap_with_hysteresis() -> None:
    harness = Harness(rule(ABOVE, 500, hysteresis=50))
    assert harness.counts(501, 500, 501, 499, 501, 460, 501) == [501]
    # Back to 450 (threshold - hysteresis) re-arms it.
    assert harness.counts(450, 501) == [501, 501]


def test_without_hysteresis_every_new_crossing_fires() -> None:
    harness = Harness(rule(ABOVE, 500))
    assert harness.counts(501, 500, 501, 500, 501) == [501, 501, 501]


def test_a_crossing_within_the_cooldown_is_suppressed() -> None:
    harness = Harness(rule(ABOVE, 500, cooldown=60))
    assert harness.counts(501, 400, 501, every=10) == [501]
    assert harness.evaluator.suppressed_total == 1
    # 60 s after the firing the next crossing fires again.
    assert harness.counts(400, 501, every=30) == [501, 501]


def test_a_rule_loaded_past_its_threshold_waits_for_the_count_to_come_back() -> None:
    harness = Harness(rule(ABOVE, 500, hysteresis=10), start=800)
    assert harness.counts(900, 600, 495) == []
    assert harness.counts(490, 501) == [501]


def test_below_fires_when_the_count_falls_under_and_rearms_above_with_hysteresis() -> None:
    harness = Harness(rule(BELOW, 100, hysteresis=20), start=150)
    assert harness.counts(120, 100) == []
    assert harness.counts(99) == [99]
    assert harness.counts(110, 99, 119, 80) == [99]
    assert harness.counts(120, 80) == [99, 80]


def test_unique_viewers_rules_read_unique_viewers() -> None:
    harness = Harness(rule(ABOVE, 10, unique=True))
    assert harness.counts(50, unique=5) == []
    assert harness.counts(50, unique=11) == [11]
    assert harness.fired[0].reference == 10


def test_drop_percent_compares_with_the_highest_count_within_the_window() -> None:
    harness = Harness(rule(DROP_PERCENT, 50, window=120, hysteresis=10), start=100)
    assert harness.counts(200, 150, 120, every=10) == []
    assert harness.counts(100, every=10) == [100]
    assert harness.fired[0].reference == 200
    # Still down by 50% or more: no second firing until the drop is under 40% (threshold - hysteresis).
    assert harness.counts(90, 110, every=10) == [100]
    assert harness.counts(130, 95, every=10) == [100, 95]


def test_a_drop_spread_over_more_than_the_window_does_not_fire() -> None:
    harness = Harness(rule(DROP_PERCENT, 50, window=60), start=200)
    # 200 -> 90 over four minutes: never half of what it was within a minute.
    assert harness.counts(170, 140, 115, 90, every=60) == []


def test_a_count_held_through_the_window_counts_as_its_highest() -> None:
    harness = Harness(rule(DROP_PERCENT, 50, window=60), start=0)
    assert harness.counts(100) == []
    # The count stayed at 100 for ten minutes, then halved: that is a drop within the window.
    assert harness.counts(40, every=600) == [40]
    assert harness.fired[0].reference == 100


async def test_zero_while_live_fires_once_the_count_stays_at_zero_for_the_duration() -> None:
    harness = Harness(rule(ZERO_WHILE_LIVE, window=1))
    # Zero before anybody watched: the auction is not live yet, nothing to report.
    harness.counts(0)
    loop = asyncio.get_running_loop()
    fired = harness.any_fired
    started = loop.time()
    harness.counts(5, 0)
    await asyncio.wait_for(fired.wait(), 5)
    assert loop.time() - started >= 1.0
    assert [f.value for f in harness.fired] == [0]
    # Zero again without viewers in between: no second firing; viewers then zero again: another.
    fired.clear()
    harness.counts(0)
    harness.counts(3, 0)
    await asyncio.wait_for(fired.wait(), 5)
    assert len(harness.fired) == 2


async def test_zero_while_live_is_not_fired_when_viewers_return_within_the_duration() -> None:
    harness = Harness(rule(ZERO_WHILE_LIVE, window=1), start=4)
    harness.counts(0)
    await asyncio.sleep(0.3)
    harness.counts(2)
    await asyncio.sleep(1.0)
    assert harness.fired == []


def test_an_unchanged_rule_keeps_its_state_when_the_rules_are_reloaded() -> None:
    watched = rule(ABOVE, 500, hysteresis=50)
    harness = Harness(watched)
    assert harness.counts(501) == [501]
    harness.evaluator.set_rules([watched], lambda _auction: RoomCounts(480, 480))
    assert harness.counts(501) == [501]
    # A changed rule starts afresh from the current counts (480: on the quiet side of 600 - 50).
    harness.evaluator.set_rules([rule(ABOVE, 600, hysteresis=50)], lambda _auction: RoomCounts(480, 480))
    assert harness.counts(601) == [501, 601]
    harness.evaluator.clear()
    assert harness.counts(100, 700) == [501, 601]


async def test_a_large_rule_set_is_replaced_in_steps_that_let_the_event_loop_run() -> None:
    rules = [
        WatchedRule(f"rule-{n}", f"a-{n % 2500}", ABOVE, False, 10, 0, 0, 0)
        for n in range(5 * RULES_PER_STEP)
    ]
    evaluator = AlertEvaluator(lambda _firing: None)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await evaluator.set_rules_gradually(rules, lambda _auction: RoomCounts(0, 0))
    during = ticks - before
    running.cancel()
    assert evaluator.rule_count == 5 * RULES_PER_STEP
    assert len(evaluator.auctions) == 2500
    # One step per RULES_PER_STEP rules (the loop ran between them), not one step for all.
    assert during >= 4


def recorded(watched: WatchedRule, armed: bool) -> WatchedRule:
    return replace(watched, recorded_armed=armed)


async def test_a_restarted_evaluator_fires_for_a_crossing_made_while_none_ran() -> None:
    """Proves a crossing during a restart is not lost: the rule was recorded armed, the counts came back
    past the threshold while the evaluator settled; it fires once they have settled, not before."""
    harness = Harness(recorded(rule(ABOVE, 10), True), start=0, settle_seconds=60)
    # Viewers reconnecting: not evaluated while the counts settle.
    assert harness.counts(3, 8, 12) == []
    harness.evaluator.settle()
    assert [firing.value for firing in harness.fired] == [12]
    assert harness.counts(15, 20) == [12]


async def test_a_restarted_evaluator_does_not_fire_again_for_a_crossing_already_reported() -> None:
    """Proves a restart does not duplicate a firing: the rule was recorded disarmed (it fired); its
    counts fall to zero with the restart and come back past the threshold while it settles."""
    harness = Harness(recorded(rule(ABOVE, 10, hysteresis=2), False), start=0, settle_seconds=60)
    assert harness.counts(5, 12) == []
    harness.evaluator.settle()
    assert harness.counts(14, 11) == []
    assert harness.armed == []
    # Back on the quiet side by the hysteresis: re-armed (and reported), the next crossing fires.
    assert harness.counts(8) == []
    assert harness.armed == [("rule-ABOVE", True)]
    assert harness.counts(11) == [11]


async def test_a_below_rule_is_not_fired_by_the_counts_of_a_restart() -> None:
    """Proves the settling: a BELOW rule recorded armed meets zero counts right after a restart, which
    are not the audience's; by the end of the settling its viewers are back."""
    harness = Harness(recorded(rule(BELOW, 50, hysteresis=5), True), start=0, settle_seconds=60)
    assert harness.counts(0, 30, 80) == []
    harness.evaluator.settle()
    assert harness.counts(60, 49) == [49]


def test_every_change_of_a_rules_armed_state_is_reported() -> None:
    """Proves what makes the state durable: the initial state of a rule never evaluated, each re-arm,
    and a crossing suppressed by the cooldown (a firing disarms by itself when it is recorded)."""
    harness = Harness(rule(ABOVE, 10, cooldown=60), start=20)
    assert harness.armed == [("rule-ABOVE", False)]
    assert harness.counts(5) == []
    assert harness.counts(11) == [11]
    assert harness.counts(5, 12, every=1.0) == [11]
    assert harness.armed == [
        ("rule-ABOVE", False),
        ("rule-ABOVE", True),
        ("rule-ABOVE", True),
        ("rule-ABOVE", False),
    ]


async def test_a_listing_of_changes_touches_only_the_rules_it_names() -> None:
    """Proves the incremental reload: an unchanged rule listed again keeps its state (here, its
    cooldown), a changed one starts afresh from the counts, a removed one is gone, a new auction is
    watched; the rules not named are left as they are."""
    kept = rule(ABOVE, 10, cooldown=60)
    changed = replace(rule(ABOVE, 20), rule_id="rule-changed")
    removed = rule(ZERO_WHILE_LIVE, window=60)
    harness = Harness(kept, changed, removed, start=3)
    assert harness.counts(11, 25, 5) == [11, 25]
    evaluator = harness.evaluator
    other = WatchedRule("rule-other", "a-2", ABOVE, False, 1, 0, 0, 0)
    assert evaluator.apply_changes(
        [kept, replace(changed, threshold=30), other], [removed.rule_id], lambda _auction: harness.now
    )
    assert evaluator.rule_count == 3
    assert evaluator.rule(removed.rule_id) is None
    assert evaluator.auctions == {"a-1", "a-2"}
    held = evaluator.rule("rule-changed")
    assert held is not None
    assert held.threshold == 30
    # kept crosses again within its cooldown: suppressed (a fresh state would have fired); the
    # changed rule fires at its new threshold.
    assert harness.counts(12, 31) == [11, 25, 31]
    # Whether the auctions watched change: a-2's last rule, then one of a-1's two, then its last.
    assert evaluator.apply_changes([], ["rule-other"], lambda _auction: harness.now)
    assert not evaluator.apply_changes([], ["rule-ABOVE"], lambda _auction: harness.now)
    assert evaluator.apply_changes([], ["rule-changed"], lambda _auction: harness.now)
    assert (evaluator.rule_count, evaluator.auctions) == (0, frozenset())
