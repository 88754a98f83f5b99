"""Seller alerts: the evaluator's cost per count change with 10,000 auctions holding rules.

Run from the repository root (figures: docs/benchmarks.md, "Alert evaluation")::

    taskset -c 1 .venv/bin/python -m bench.alert_evaluation
    .venv/bin/python -m bench.alert_evaluation --auctions 10000 --rules-per-auction 3 --changes 200000

Builds the gateway's live-count feed (``socket_gateway.live.feed.CountFeed``, what every join and
leave publishes to) with ``--auctions`` auctions, each holding ``--rules-per-auction`` rules (cycling
ABOVE, BELOW, DROP_PERCENT, ZERO_WHILE_LIVE, with hysteresis and a cooldown) loaded into the real
``AlertEvaluator``, which watches them as the gateway's ``AlertService`` does. Then publishes
``--changes`` count changes (a random walk per auction, auctions picked at random, one change a
simulated 10 ms so windows and cooldowns move) through the feed twice: once with the evaluator
watching, once without it (the feed's own cost), in alternating rounds, and reports the CPU time per
change of each and their difference: what alert evaluation adds to a count change. Also the memory the
rules and their state take (tracemalloc), the time to load them, and how many firings the walk made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass

from socket_gateway.live.alerts import (
    ABOVE,
    BELOW,
    DROP_PERCENT,
    ZERO_WHILE_LIVE,
    AlertEvaluator,
    Firing,
    WatchedRule,
)
from socket_gateway.live.feed import CountFeed
from socket_gateway.live.rooms import RoomCounts

KINDS = (ABOVE, BELOW, DROP_PERCENT, ZERO_WHILE_LIVE)


@dataclass
class Result:
    auctions: int
    rules: int
    changes: int
    rounds: int
    feed_only_ns_per_change: float
    with_alerts_ns_per_change: float
    alerts_ns_per_change: float
    alerts_ns_per_rule_evaluation: float
    load_seconds: float
    rules_memory_bytes: int
    firings: int


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_rules(auctions: int, per_auction: int) -> list[WatchedRule]:
    rules = []
    for a in range(auctions):
        for r in range(per_auction):
            kind = KINDS[(a + r) % len(KINDS)]
            threshold = {ABOVE: 60, BELOW: 20, DROP_PERCENT: 50, ZERO_WHILE_LIVE: 0}[kind]
            rules.append(
                WatchedRule(f"rule-{a}-{r}", f"auction-{a}", kind, r % 2 == 1, threshold, 120, 5, 60)
            )
    return rules


def walk(auctions: int, changes: int, seed: int) -> list[tuple[str, RoomCounts]]:
    """``changes`` count changes: a random auction moves by -3..+3 (at least 1, never below 0)."""
    rng = random.Random(seed)
    counts = [40] * auctions
    out = []
    for _ in range(changes):
        a = rng.randrange(auctions)
        step = rng.choice((-3, -2, -1, 1, 2, 3))
        counts[a] = max(1, counts[a] + step)
        out.append((f"auction-{a}", RoomCounts(counts[a], max(1, counts[a] - 3))))
    return out


def publish_all(feed: CountFeed, clock: SimulatedClock, changes: list[tuple[str, RoomCounts]]) -> float:
    started = time.process_time()
    for auction_id, counts in changes:
        clock.now += 0.01
        feed.publish(auction_id, counts)
    return time.process_time() - started


async def run(auctions: int, per_auction: int, changes: int, rounds: int, seed: int) -> Result:
    clock = SimulatedClock()
    fired: list[Firing] = []
    rules = make_rules(auctions, per_auction)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    evaluator = AlertEvaluator(fired.append, clock)
    started = time.perf_counter()
    evaluator.set_rules(rules, lambda _auction: RoomCounts(40, 37))
    load_seconds = time.perf_counter() - started
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    memory = sum(stat.size_diff for stat in after.compare_to(before, "filename"))

    with_alerts: list[float] = []
    feed_only: list[float] = []
    for index in range(rounds):
        sequence = walk(auctions, changes, seed + index)
        # The same walk through a feed with and without the evaluator, in alternating order.
        for watching in (True, False) if index % 2 == 0 else (False, True):
            feed = CountFeed()
            if watching:
                feed.watch(evaluator, evaluator.auctions)
            seconds = publish_all(feed, clock, sequence)
            (with_alerts if watching else feed_only).append(seconds / changes * 1e9)
            feed.unwatch(evaluator)
    evaluator.clear()
    with_median = statistics.median(with_alerts)
    feed_median = statistics.median(feed_only)
    return Result(
        auctions=auctions,
        rules=len(rules),
        changes=changes,
        rounds=rounds,
        feed_only_ns_per_change=round(feed_median, 1),
        with_alerts_ns_per_change=round(with_median, 1),
        alerts_ns_per_change=round(with_median - feed_median, 1),
        alerts_ns_per_rule_evaluation=round((with_median - feed_median) / per_auction, 1),
        load_seconds=round(load_seconds, 3),
        rules_memory_bytes=memory,
        firings=len(fired),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--auctions", type=int, default=10_000)
    parser.add_argument("--rules-per-auction", type=int, default=3)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", help="also write the result to this file")
    options = parser.parse_args()
    result = asyncio.run(
        run(options.auctions, options.rules_per_auction, options.changes, options.rounds, options.seed)
    )
    text = json.dumps(asdict(result), indent=2)
    print(text)
    if options.json:
        with open(options.json, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
