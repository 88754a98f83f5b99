"""Seller alerts: what one reload of the rules costs, in full and as a listing of changes, same run.

Run from the repository root (figures: docs/benchmarks.md, "Alert rule reloads")::

    .venv/bin/python -m bench.alert_reload --rules 30000 --reloads 10

A real ``python -m ingest_service`` on a fresh SQLite file holding ``--rules`` rules (written through
its store before it starts, 3 per auction, created an hour ago), and this process as the evaluator:
the real ``AlertEvaluator`` loaded with every rule over gRPC, then ``--reloads`` reloads each way in
alternating rounds — in full (every rule paged through ``ListActiveAlertRules`` and replaced by
``set_rules_gradually``, what the gateway did every ``GATEWAY_ALERT_RULES_REFRESH_SECONDS`` before the
listings of changes) and incremental (``ListActiveAlertRules`` with ``changes_since``, applied by
``apply_changes``, what it does now), with ``--changes`` rules updated before each incremental reload.
Reports the CPU time per reload of the ingest process and of the evaluator, each way.

Only loopback addresses are used; every loop is bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from viewer_analytics.v1 import alert_rule_service_pb2 as alerts_pb2
from viewer_analytics.v1 import alert_rule_service_pb2_grpc as alerts_grpc

from bench.ingest_process import IngestProcess
from ingest_service.alerts.domain import (
    AlertKind,
    AlertMetric,
    AlertRule,
    AlertRuleSpec,
    new_rule_id,
    new_secret,
)
from ingest_service.alerts.sqlite_store import SqliteAlertStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.internal_auth import internal_key_metadata
from socket_gateway.live.alerts import AlertEvaluator, WatchedRule
from socket_gateway.live.rooms import RoomCounts
from testkit import measure

KEY = "bench-alert-reload-key-0123456789abcdef"
PAGE = 1000


async def fill(path: Path, rules: int) -> list[AlertRule]:
    snapshots = await SqliteSnapshotStore.open(str(path), retention_days=90, clock=time.time)
    store = await SqliteAlertStore.open(snapshots, retention_days=90, clock=time.time)
    created = time.time() - 3600
    made = []
    for n in range(rules):
        spec = AlertRuleSpec(
            AlertKind.ABOVE, AlertMetric.CONNECTIONS, 100 + n % 50, 0, 5, 60, "https://hooks.example.com/a"
        )
        rule = AlertRule(new_rule_id(), f"auction-{n // 3}", spec, new_secret(), created, created)
        await store.create_rule(rule)
        made.append(rule)
    await store.close()
    await snapshots.close()
    return made


async def listing(
    stub: alerts_grpc.AlertRuleServiceStub, metadata: tuple[tuple[str, str], ...], since: str
) -> tuple[list[WatchedRule], list[str], str]:
    rules: list[WatchedRule] = []
    removed: list[str] = []
    token, cursor = "", ""
    while True:
        page = await stub.ListActiveAlertRules(
            alerts_pb2.ListActiveAlertRulesRequest(page_size=PAGE, page_token=token, changes_since=since),
            metadata=metadata,
        )
        cursor = cursor or page.changes_cursor
        rules.extend(rule for rule in map(WatchedRule.from_wire, page.rules) if rule is not None)
        removed.extend(page.removed_rule_ids)
        token = page.next_page_token
        if not token:
            return rules, removed, cursor


async def measure_reloads(rules: int, reloads: int, changes: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "analytics.sqlite3"
        made = await fill(path, rules)
        settings = {"INTERNAL_API_KEY": KEY, "ANALYTICS_SQLITE_PATH": str(path), "LOG_LEVEL": "warning"}
        async with IngestProcess(settings, Path(workdir) / "ingest.log", cpu=None) as ingest:
            metadata = tuple(internal_key_metadata(KEY))
            async with grpc.aio.insecure_channel(ingest.target) as channel:
                stub = alerts_grpc.AlertRuleServiceStub(channel)
                evaluator = AlertEvaluator(lambda _firing: None)
                counts = lambda _auction: RoomCounts(10, 10)  # noqa: E731
                loaded, _, cursor = await listing(stub, metadata, "")
                await evaluator.set_rules_gradually(loaded, counts)
                assert evaluator.rule_count == rules
                spent = {"full": [0.0, 0.0], "incremental": [0.0, 0.0]}
                received = {"full": 0, "incremental": 0}
                for round_ in range(reloads):
                    # A few rules change between two reloads (a seller raising a threshold).
                    for n in range(changes):
                        rule = made[(round_ * changes + n) % len(made)]
                        await stub.UpdateAlertRule(
                            alerts_pb2.UpdateAlertRuleRequest(
                                auction_id=rule.auction_id,
                                rule_id=rule.rule_id,
                                spec=alerts_pb2.AlertRuleSpec(
                                    kind=alerts_pb2.ALERT_KIND_ABOVE,
                                    metric=alerts_pb2.ALERT_METRIC_CONNECTIONS,
                                    threshold=500 + round_,
                                    hysteresis=5,
                                    cooldown_seconds=60,
                                    webhook_url=rule.spec.webhook_url,
                                ),
                            ),
                            metadata=metadata,
                        )
                    for way in ("full", "incremental") if round_ % 2 == 0 else ("incremental", "full"):
                        ingest_before, own_before = measure.cpu_seconds(ingest.pid), time.process_time()
                        if way == "full":
                            fresh, _, cursor = await listing(stub, metadata, "")
                            await evaluator.set_rules_gradually(fresh, counts)
                            received[way] += len(fresh)
                        else:
                            fresh, removed, next_cursor = await listing(stub, metadata, cursor)
                            evaluator.apply_changes(fresh, removed, counts)
                            cursor = next_cursor
                            received[way] += len(fresh) + len(removed)
                        spent[way][0] += measure.cpu_seconds(ingest.pid) - ingest_before
                        spent[way][1] += time.process_time() - own_before
                assert evaluator.rule_count == rules
    result: dict[str, object] = {"rules": rules, "reloads_each_way": reloads, "changes_per_reload": changes}
    for way, (ingest_s, evaluator_s) in spent.items():
        result[f"{way}_ingest_ms_per_reload"] = round(ingest_s / reloads * 1e3, 2)
        result[f"{way}_evaluator_ms_per_reload"] = round(evaluator_s / reloads * 1e3, 2)
        result[f"{way}_rules_read_per_reload"] = round(received[way] / reloads, 1)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, default=30_000)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure_reloads(args.rules, args.reloads, args.changes)), indent=2))


if __name__ == "__main__":
    main()
