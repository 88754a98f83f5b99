"""Seller alerts evaluated on the live counts: the rules from the ingest service, each count change
checked against them at once, and a firing reported back to the ingest service, which sends the webhook.

One evaluator per auction: a gateway alone evaluates every auction; with ``REDIS_URL`` only the node
holding the sampler lease does (``leads``), on the cluster's global counts the feed polls. A rule fires
on a crossing it sees: it is *armed* while the count is on the quiet side of its threshold by at least
the hysteresis, and fires (then disarms) when the count crosses; a crossing within the cooldown of the
rule's last firing disarms it without a firing.

Each rule's armed state is durable: every change of it is reported to the ingest service (a firing
disarms; ``RecordAlertArmed`` for the rest), which hands it back with the rules. An evaluator that
starts (a restart, a node taking the lease) waits ``settle_seconds`` for the counts to come back (the
viewers of a restarted gateway reconnect), then compares them with each rule's recorded state: armed
and past the threshold fires (a crossing made while no evaluator ran), disarmed stays so until the
count comes back (a crossing already reported is not reported again). A rule never evaluated (new, or
its spec changed) is armed only if the count is on its quiet side, as before.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2
from viewer_analytics.v1 import alert_rule_service_pb2_grpc as alerts_grpc

from service_common.internal_auth import internal_key_metadata
from service_common.log_limits import RateLimitedLog
from socket_gateway.live.feed import CountFeed
from socket_gateway.live.rooms import RoomCounts

logger = logging.getLogger(__name__)

ABOVE, BELOW, DROP_PERCENT, ZERO_WHILE_LIVE = "ABOVE", "BELOW", "DROP_PERCENT", "ZERO_WHILE_LIVE"
_KINDS = {
    alerts_pb2.ALERT_KIND_ABOVE: ABOVE,
    alerts_pb2.ALERT_KIND_BELOW: BELOW,
    alerts_pb2.ALERT_KIND_DROP_PERCENT: DROP_PERCENT,
    alerts_pb2.ALERT_KIND_ZERO_WHILE_LIVE: ZERO_WHILE_LIVE,
}
# Firings waiting to reach the ingest service; past this a burst is dropped (and logged), not kept.
MAX_QUEUED_FIRINGS = 10_000
_RULE_PAGE = 1000
# Rules replaced between two returns to the event loop (about 10 ms of work on a loaded machine).
RULES_PER_STEP = 1000
_CALL_TIMEOUT_SECONDS = 5.0
_Answer = TypeVar("_Answer")
# How long an evaluator that starts waits before comparing the counts with the rules' recorded states:
# a restarted gateway's viewers reconnect within about 1-2 s (socket.io-client's first retry comes
# after 0.5-1.5 s), and until they have, its counts read low. A crossing in that moment is reported
# when it ends.
SETTLE_SECONDS = 3.0
# Armed-state reports sent in one RecordAlertArmed call (the service takes up to 1,000).
_ARMED_BATCH = 500
_ARMED_FROM_WIRE = {
    alerts_pb2.ALERT_ARMED_STATE_ARMED: True,
    alerts_pb2.ALERT_ARMED_STATE_DISARMED: False,
}


@dataclass(frozen=True, slots=True)
class WatchedRule:
    """A rule as the evaluator reads it (``kind`` one of the four names; ``unique`` reads uniqueViewers)."""

    rule_id: str
    auction_id: str
    kind: str
    unique: bool
    threshold: int
    window_seconds: int
    hysteresis: int
    cooldown_seconds: int
    # The spec's moment (the ingest service's ``updated_at``): a state is recorded for one spec.
    updated_at_nanos: int = 0
    # The armed state recorded for this spec when the rule was read (None: never evaluated). Not part
    # of the rule's identity: a reload that reads a newer state keeps the evaluator's own.
    recorded_armed: bool | None = field(default=None, compare=False)

    @classmethod
    def from_wire(cls, rule: alerts_pb2.AlertRule) -> WatchedRule | None:
        kind = _KINDS.get(rule.spec.kind)
        if kind is None:
            return None
        return cls(
            rule.rule_id,
            rule.auction_id,
            kind,
            rule.spec.metric == alerts_pb2.ALERT_METRIC_UNIQUE_VIEWERS,
            rule.spec.threshold,
            rule.spec.window_seconds,
            rule.spec.hysteresis,
            rule.spec.cooldown_seconds,
            rule.updated_at.ToNanoseconds(),
            _ARMED_FROM_WIRE.get(rule.armed_state),
        )

    def value(self, counts: RoomCounts) -> int:
        return counts.unique_viewers if self.unique else counts.viewer_count


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule fired at ``at`` (epoch seconds): ``value`` crossed; ``reference`` is what it was compared
    with (the threshold; DROP_PERCENT: the window's highest count; ZERO_WHILE_LIVE: the duration)."""

    rule_id: str
    auction_id: str
    value: int
    reference: int
    at: float
    firing_id: str = field(default_factory=lambda: secrets.token_hex(16))


class ArmedReporter(Protocol):
    """Told each change of a rule's armed state that is not a firing (a firing disarms by itself)."""

    def __call__(self, rule: WatchedRule, armed: bool) -> None: ...


@dataclass(slots=True)
class _State:
    armed: bool = False
    # Loaded when the evaluator started: not evaluated until the counts have settled.
    settling: bool = False
    last_fired: float = -math.inf
    # DROP_PERCENT: the window's candidates for its highest count, (time, value), values decreasing
    # (None for the other kinds: an empty deque is about 600 bytes, most of a rule's memory).
    peaks: deque[tuple[float, int]] | None = None
    # The count last seen: it held until the next change, so the window sees it up to then.
    previous: int = 0
    # ZERO_WHILE_LIVE: the timer running while the count is zero.
    zero_timer: asyncio.TimerHandle | None = None


class AlertEvaluator:
    """Checks every count change of an auction against its rules (a ``CountListener``).

    ``fire`` is called with each firing, synchronously, and ``report_armed`` with every other change
    of a rule's armed state; ``clock`` gives epoch seconds. The work per change is a dictionary lookup
    and a comparison per rule of that auction.
    """

    def __init__(
        self,
        fire: Callable[[Firing], None],
        clock: Callable[[], float] = time.time,
        leads: Callable[[], bool] = lambda: True,
        report_armed: ArmedReporter | None = None,
    ) -> None:
        self._fire = fire
        self._clock = clock
        self._leads = leads
        self._report_armed: ArmedReporter = report_armed or (lambda _rule, _armed: None)
        self._rules: dict[str, tuple[WatchedRule, _State]] = {}
        self._by_auction: dict[str, list[tuple[WatchedRule, _State]]] = {}
        self._settle_timer: asyncio.TimerHandle | None = None
        self._current: Callable[[str], RoomCounts] = lambda _auction: RoomCounts(0, 0)
        self.fired_total = 0
        self.suppressed_total = 0

    @property
    def rule_count(self) -> int:
        return len(self._rules)

    @property
    def auctions(self) -> frozenset[str]:
        return frozenset(self._by_auction)

    def rule(self, rule_id: str) -> WatchedRule | None:
        """The rule of that id as this evaluator holds it, if it does."""
        entry = self._rules.get(rule_id)
        return None if entry is None else entry[0]

    def set_rules(
        self,
        rules: Iterable[WatchedRule],
        current: Callable[[str], RoomCounts],
        settle_seconds: float | None = None,
    ) -> None:
        """Replaces the rules; an unchanged rule keeps its state. A new or changed one starts from its
        recorded state (``WatchedRule.recorded_armed``) against the auction's ``current`` counts, or,
        never evaluated, is armed only if they are on its quiet side.

        ``settle_seconds`` (an evaluator that starts): the rules with a recorded state are evaluated
        only once that has passed, against the counts then.
        """
        for _ in self._replace(rules, current, settle_seconds):
            pass

    async def set_rules_gradually(
        self,
        rules: Iterable[WatchedRule],
        current: Callable[[str], RoomCounts],
        settle_seconds: float | None = None,
    ) -> None:
        """:meth:`set_rules`, returning to the event loop every :data:`RULES_PER_STEP` rules.

        Replacing 30,000 rules took 0.26 s (docs/benchmarks.md): in one go, every socket of the node
        would wait that long at each reload. The old rules stay in force until the new set is whole.
        """
        for _ in self._replace(rules, current, settle_seconds):
            await asyncio.sleep(0)

    def _replace(
        self,
        rules: Iterable[WatchedRule],
        current: Callable[[str], RoomCounts],
        settle_seconds: float | None,
    ) -> Iterator[None]:
        kept: dict[str, tuple[WatchedRule, _State]] = {}
        by_auction: dict[str, list[tuple[WatchedRule, _State]]] = {}
        self._current = current
        settling = False
        for count, rule in enumerate(rules, 1):
            known = self._rules.get(rule.rule_id)
            if known is not None and known[0] == rule:
                entry = known
            else:
                entry = (rule, _State())
                if settle_seconds is not None and rule.recorded_armed is not None:
                    entry[1].settling = settling = True
                else:
                    self._start(rule, entry[1], rule.value(current(rule.auction_id)), self._clock())
            kept[rule.rule_id] = entry
            by_auction.setdefault(rule.auction_id, []).append(entry)
            if count % RULES_PER_STEP == 0:
                yield
        old = self._rules
        self._rules, self._by_auction = kept, by_auction
        if settling and settle_seconds is not None:
            if self._settle_timer is not None:
                self._settle_timer.cancel()
            self._settle_timer = asyncio.get_running_loop().call_later(settle_seconds, self.settle)
        for count, (rule_id, (_rule, state)) in enumerate(old.items(), 1):
            if kept.get(rule_id, (None, None))[1] is not state:
                _cancel_timer(state)
            if count % RULES_PER_STEP == 0:
                yield

    def apply_changes(
        self, rules: Iterable[WatchedRule], removed: Iterable[str], current: Callable[[str], RoomCounts]
    ) -> bool:
        """Applies a listing of changes: ``rules`` new or changed (an unchanged one keeps its state),
        ``removed`` (ids) paused or deleted; the others stay as they are. The work is per change, not
        per rule held. Returns whether the set of auctions with rules changed."""
        self._current = current
        auctions_changed = False
        now = self._clock()
        for rule_id in removed:
            auctions_changed |= self._drop(rule_id)
        for rule in rules:
            known = self._rules.get(rule.rule_id)
            if known is not None and known[0] == rule:
                continue
            if known is not None:
                self._drop(rule.rule_id)
            entry = (rule, _State())
            self._start(rule, entry[1], rule.value(current(rule.auction_id)), now)
            self._rules[rule.rule_id] = entry
            listed = self._by_auction.get(rule.auction_id)
            if listed is None:
                listed = self._by_auction[rule.auction_id] = []
                auctions_changed = True
            listed.append(entry)
        return auctions_changed

    def _drop(self, rule_id: str) -> bool:
        """Forgets one rule; whether its auction has no rule left."""
        entry = self._rules.pop(rule_id, None)
        if entry is None:
            return False
        _cancel_timer(entry[1])
        auction = entry[0].auction_id
        listed = [each for each in self._by_auction.get(auction, ()) if each is not entry]
        if listed:
            self._by_auction[auction] = listed
            return False
        self._by_auction.pop(auction, None)
        return True

    def settle(self) -> None:
        """The counts have come back: each rule loaded at the start meets them with its recorded state."""
        self._settle_timer = None
        now = self._clock()
        settled = 0
        for rule, state in list(self._rules.values()):
            if state.settling:
                state.settling = False
                settled += 1
                self._start(rule, state, rule.value(self._current(rule.auction_id)), now)
        logger.info("Alert rules settled", extra={"rules": settled})

    def _start(self, rule: WatchedRule, state: _State, value: int, now: float) -> None:
        """A rule's evaluation begins: from its recorded state if it has one, else from the count."""
        recorded = rule.recorded_armed
        self._arm_initially(rule, state, value, now)
        if recorded is None:
            self._report_armed(rule, state.armed)
            return
        if rule.kind == DROP_PERCENT:
            # Its window begins now (the counts before the start are gone): the recorded state decides
            # only whether the rule may fire before the count is back by the hysteresis.
            state.armed = recorded
            return
        state.armed = recorded
        # Armed and already past the threshold: the crossing was made while no evaluator ran.
        # Disarmed and back on the quiet side: re-armed (and reported).
        if self._leads():
            self._evaluate(rule, state, value, now)

    def clear(self) -> None:
        """Forgets every rule (this node stopped evaluating)."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self.set_rules((), lambda _auction: RoomCounts(0, 0))

    def counts_changed(self, auction_id: str, counts: RoomCounts) -> None:
        entries = self._by_auction.get(auction_id)
        # Checked on every change, not only when the rules reload: a node that has just lost the
        # sampler lease stops at once, so two nodes evaluate together only as long as the lease's
        # own hand-over lets two believe they hold it.
        if not entries or not self._leads():
            return
        now = self._clock()
        connections, unique = counts.viewer_count, counts.unique_viewers
        evaluate = self._evaluate
        for rule, state in entries:
            if not state.settling:
                evaluate(rule, state, unique if rule.unique else connections, now)

    def _arm_initially(self, rule: WatchedRule, state: _State, value: int, now: float) -> None:
        if rule.kind == ABOVE:
            state.armed = value <= rule.threshold - rule.hysteresis
        elif rule.kind == BELOW:
            state.armed = value >= rule.threshold + rule.hysteresis
        elif rule.kind == DROP_PERCENT:
            state.peaks = deque([(now, value)])
            state.previous = value
            state.armed = True
        else:
            state.armed = value > rule.hysteresis

    def _evaluate(self, rule: WatchedRule, state: _State, value: int, now: float) -> None:
        if rule.kind == ABOVE:
            if state.armed and value > rule.threshold:
                self._crossed(rule, state, value, rule.threshold, now)
            elif not state.armed and value <= rule.threshold - rule.hysteresis:
                self._rearm(rule, state)
        elif rule.kind == BELOW:
            if state.armed and value < rule.threshold:
                self._crossed(rule, state, value, rule.threshold, now)
            elif not state.armed and value >= rule.threshold + rule.hysteresis:
                self._rearm(rule, state)
        elif rule.kind == DROP_PERCENT:
            peaks = state.peaks
            if peaks is None:
                peaks = state.peaks = deque()
            for held in (state.previous, value):
                while peaks and peaks[-1][1] <= held:
                    peaks.pop()
                peaks.append((now, held))
            state.previous = value
            while peaks[0][0] < now - rule.window_seconds:
                peaks.popleft()
            peak = peaks[0][1]
            drop = 0.0 if peak <= 0 else (peak - value) * 100 / peak
            if state.armed and drop >= rule.threshold:
                self._crossed(rule, state, value, peak, now)
            elif not state.armed and drop <= rule.threshold - rule.hysteresis:
                self._rearm(rule, state)
        else:
            self._zero_while_live(rule, state, value)

    def _zero_while_live(self, rule: WatchedRule, state: _State, value: int) -> None:
        if value > 0:
            _cancel_timer(state)
            if value > rule.hysteresis and not state.armed:
                self._rearm(rule, state)
            return
        if state.armed and state.zero_timer is None:
            # A timer, not a poll: it fires the moment the duration is up, and costs nothing meanwhile.
            state.zero_timer = asyncio.get_running_loop().call_later(
                rule.window_seconds, self._zero_elapsed, rule, state
            )

    def _zero_elapsed(self, rule: WatchedRule, state: _State) -> None:
        state.zero_timer = None
        if self._rules.get(rule.rule_id, (None, None))[1] is state and state.armed and self._leads():
            self._crossed(rule, state, 0, rule.window_seconds, self._clock())

    def _rearm(self, rule: WatchedRule, state: _State) -> None:
        state.armed = True
        self._report_armed(rule, True)

    def _crossed(self, rule: WatchedRule, state: _State, value: int, reference: int, now: float) -> None:
        state.armed = False
        if now - state.last_fired < rule.cooldown_seconds:
            self.suppressed_total += 1
            self._report_armed(rule, False)
            return
        state.last_fired = now
        self.fired_total += 1
        self._fire(Firing(rule.rule_id, rule.auction_id, value, reference, now))


def _cancel_timer(state: _State) -> None:
    if state.zero_timer is not None:
        state.zero_timer.cancel()
        state.zero_timer = None


@dataclass(frozen=True, slots=True)
class _ArmedChange:
    rule: WatchedRule
    armed: bool


class AlertService:
    """The evaluator's two loops against the ingest service: the rules, refreshed every
    ``refresh_seconds`` while this node ``leads``, and the reports, sent in the order they were made:
    each firing (``RecordAlertFiring``, retried while the ingest service is unavailable: its
    ``firing_id`` makes a retry queue nothing more) and the other changes of the rules' armed states
    (``RecordAlertArmed``, in batches).

    A report waits in memory until the ingest service has it. A gateway killed before that loses it,
    but not the crossing: the rule's recorded state is still armed, and the evaluator that starts next
    fires for it once its counts have settled (``settle_seconds``).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        internal_key: str,
        feed: CountFeed,
        leads: Callable[[], bool],
        refresh_seconds: float,
        clock: Callable[[], float] = time.time,
        log: RateLimitedLog | None = None,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self._stub = alerts_grpc.AlertRuleServiceStub(channel)
        self._metadata = internal_key_metadata(internal_key)
        self._feed = feed
        self._leads = leads
        self._refresh_seconds = refresh_seconds
        self._settle_seconds = settle_seconds
        self._log = log or RateLimitedLog(logger)
        self._firings: asyncio.Queue[Firing | _ArmedChange] = asyncio.Queue(MAX_QUEUED_FIRINGS)
        self.evaluator = AlertEvaluator(self._queue, clock, leads, self._queue_armed)
        self.reported_total = 0
        self.dropped_total = 0
        self.loaded = asyncio.Event()
        # Rounds of the rules loop so far (each decides whether this node leads).
        self.rounds = 0
        # The last complete listing's cursor: the next one lists only the changes since (None: list in
        # full, as at the start or with an ingest service of before the listings of changes).
        self._changes_cursor: str | None = None
        # Rules (and removals) read from the ingest service so far: what a reload costs.
        self.rules_received_total = 0

    def _queue(self, report: Firing | _ArmedChange) -> None:
        try:
            self._firings.put_nowait(report)
        except asyncio.QueueFull:
            self.dropped_total += 1
            self._log.warning(
                "alert_firings_full", "Alert firing dropped: too many waiting for the ingest service"
            )

    def _queue_armed(self, rule: WatchedRule, armed: bool) -> None:
        self._queue(_ArmedChange(rule, armed))

    async def run_rules(self) -> None:
        """Loads the rules while this node leads, and stops evaluating while it does not (supervised)."""
        try:
            while True:
                if self._leads():
                    await self._load()
                else:
                    self._stop_evaluating()
                self.rounds += 1
                await asyncio.sleep(self._refresh_seconds)
        finally:
            self._stop_evaluating()

    def _stop_evaluating(self) -> None:
        if self.evaluator.rule_count:
            logger.info("Alert evaluation stopped here (not the sampler lease holder)")
        self._feed.unwatch(self.evaluator)
        self.evaluator.clear()
        self.loaded.clear()
        self._changes_cursor = None

    async def _load(self) -> None:
        since = self._changes_cursor if self.loaded.is_set() else None
        rules: list[WatchedRule] = []
        removed: list[str] = []
        token = ""
        cursor = ""
        try:
            while True:
                page = await self._stub.ListActiveAlertRules(
                    alerts_pb2.ListActiveAlertRulesRequest(
                        page_size=_RULE_PAGE, page_token=token, changes_since=since or ""
                    ),
                    metadata=self._metadata,
                    timeout=_CALL_TIMEOUT_SECONDS,
                )
                # The first page's cursor: a change made while the later pages were read is listed again.
                cursor = cursor or page.changes_cursor
                rules.extend(rule for rule in map(WatchedRule.from_wire, page.rules) if rule is not None)
                removed.extend(page.removed_rule_ids)
                self.rules_received_total += len(page.rules) + len(page.removed_rule_ids)
                token = page.next_page_token
                if not token:
                    break
        except grpc.aio.AioRpcError as error:
            # The rules already loaded stay in force until the ingest service answers again. An ingest
            # service without alerts (UNIMPLEMENTED: an older version) is no fault of this node's.
            code = error.code()
            if code == grpc.StatusCode.FAILED_PRECONDITION and since is not None:
                # The cursor is older than the deletions the ingest service keeps: in full next time.
                self._changes_cursor = None
            self._log.log(
                logging.INFO if code == grpc.StatusCode.UNIMPLEMENTED else logging.WARNING,
                f"alert_rules_unavailable:{code.name}",
                "Alert rules not refreshed",
                extra={"code": code.name, "details": error.details()},
            )
            return
        # An ingest service of before the listings of changes gives no cursor: every reload in full.
        self._changes_cursor = cursor or None
        if since is not None:
            if self.evaluator.apply_changes(rules, removed, self._feed.current):
                self._feed.watch(self.evaluator, self.evaluator.auctions)
            return
        first = not self.loaded.is_set()
        # Starting to evaluate: the rules with a recorded state wait for the counts to settle.
        await self.evaluator.set_rules_gradually(
            rules, self._feed.current, self._settle_seconds if first else None
        )
        self._feed.watch(self.evaluator, self.evaluator.auctions)
        self.loaded.set()
        if first:
            logger.info("Alert rules loaded", extra={"rules": len(rules)})

    async def run_reports(self) -> None:
        """Reports each firing and armed state to the ingest service, in order (supervised)."""
        held: Firing | _ArmedChange | None = None
        while True:
            report = held if held is not None else await self._firings.get()
            held = None
            if isinstance(report, Firing):
                await self._report(report)
                continue
            # The armed changes waiting now go in one call; a firing behind them waits for it.
            batch = [report]
            while len(batch) < _ARMED_BATCH and not self._firings.empty():
                following = self._firings.get_nowait()
                if isinstance(following, Firing):
                    held = following
                    break
                batch.append(following)
            await self._report_armed(batch)

    async def _report_armed(self, batch: list[_ArmedChange]) -> None:
        request = alerts_pb2.RecordAlertArmedRequest()
        for change in batch:
            report = request.reports.add(
                auction_id=change.rule.auction_id, rule_id=change.rule.rule_id, armed=change.armed
            )
            report.rule_updated_at.FromNanoseconds(change.rule.updated_at_nanos)
        answer = await self._until_answered(
            lambda: self._stub.RecordAlertArmed(
                request, metadata=self._metadata, timeout=_CALL_TIMEOUT_SECONDS
            ),
            "alert_armed_retry",
            "Alert rule states not recorded yet; retrying",
        )
        if isinstance(answer, grpc.aio.AioRpcError):
            # UNIMPLEMENTED: an ingest service of before the recorded states; the rules are then
            # evaluated from the counts alone after a restart, as they were.
            code = answer.code()
            self._log.info(
                f"alert_armed_refused:{code.name}",
                "Alert rule states refused by the ingest service",
                extra={"code": code.name, "details": answer.details()},
            )

    async def _report(self, firing: Firing) -> None:
        request = alerts_pb2.RecordAlertFiringRequest(
            auction_id=firing.auction_id,
            rule_id=firing.rule_id,
            firing_id=firing.firing_id,
            value=firing.value,
            reference_value=firing.reference,
            # Of two evaluators reporting one crossing (a hand-over), the ingest service keeps one.
            require_armed=True,
        )
        request.fired_at.FromNanoseconds(round(firing.at * 1e9))
        response = await self._until_answered(
            lambda: self._stub.RecordAlertFiring(
                request, metadata=self._metadata, timeout=_CALL_TIMEOUT_SECONDS
            ),
            "alert_report_retry",
            "Alert firing not reported yet; retrying",
        )
        if isinstance(response, grpc.aio.AioRpcError):
            # NOT_FOUND: the rule was deleted or paused since it was loaded; nothing to send.
            code = response.code()
            self._log.info(
                f"alert_report_refused:{code.name}",
                "Alert firing refused by the ingest service",
                extra={"code": code.name, "rule_id": firing.rule_id, "details": response.details()},
            )
            return
        self.reported_total += 1
        logger.info(
            "Alert fired",
            extra={
                "rule_id": firing.rule_id,
                "auction_id": firing.auction_id,
                "value": firing.value,
                "delivery_id": response.delivery.delivery_id,
            },
        )

    async def _until_answered(
        self, call: Callable[[], Awaitable[_Answer]], retry_cause: str, retry_message: str
    ) -> _Answer | grpc.aio.AioRpcError:
        """The ingest service's answer to ``call``, or its refusal: retried, with backoff up to 10 s,
        for as long as the service is unreachable or does not answer in time (a report is never dropped
        for an outage)."""
        delay = 0.2
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return error
                self._log.warning(retry_cause, retry_message, extra={"code": code.name})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
