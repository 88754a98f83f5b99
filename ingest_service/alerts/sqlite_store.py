"""Alert rules and deliveries in the snapshot store's SQLite file, on its connection and thread."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable
from typing import Any

from ingest_service.alerts.domain import (
    MAX_RULES_PER_AUCTION,
    AlertDelivery,
    AlertKind,
    AlertMetric,
    AlertRule,
    AlertRuleNotFound,
    AlertRuleSpec,
    DeliveryStatus,
    TooManyAlertRules,
)
from ingest_service.alerts.store import DELETED_RULES_KEPT_SECONDS, UPDATED_AT_TOLERANCE_SECONDS, ArmedReport
from ingest_service.storage.sqlite_companion import SqliteCompanionStore
from ingest_service.storage.sqlite_store import SqliteSnapshotStore
from service_common.sqlite_transactions import write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_rules (
    rule_id          TEXT    PRIMARY KEY,
    auction_id       TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    metric           TEXT    NOT NULL,
    threshold        INTEGER NOT NULL,
    window_seconds   INTEGER NOT NULL,
    hysteresis       INTEGER NOT NULL,
    cooldown_seconds INTEGER NOT NULL,
    webhook_url      TEXT    NOT NULL,
    paused           INTEGER NOT NULL,
    secret           TEXT    NOT NULL,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_rules_by_auction ON alert_rules (auction_id, created_at);
CREATE INDEX IF NOT EXISTS alert_rules_by_change ON alert_rules (updated_at, rule_id);
-- Deleted rules, for the evaluators' listings of changes (kept a day).
CREATE TABLE IF NOT EXISTS alert_rule_deletions (
    rule_id    TEXT PRIMARY KEY,
    deleted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_rule_deletions_by_time ON alert_rule_deletions (deleted_at);
CREATE TABLE IF NOT EXISTS alert_rule_firings (
    rule_id       TEXT PRIMARY KEY,
    last_fired_at REAL NOT NULL
) WITHOUT ROWID;
-- A rule's evaluation state for its current spec (a row is removed when the spec changes).
CREATE TABLE IF NOT EXISTS alert_rule_states (
    rule_id        TEXT    PRIMARY KEY,
    armed          INTEGER NOT NULL,
    last_firing_id TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_deliveries (
    delivery_id      TEXT    PRIMARY KEY,
    rule_id          TEXT    NOT NULL,
    auction_id       TEXT    NOT NULL,
    event_type       TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    webhook_url      TEXT    NOT NULL,
    secret           TEXT    NOT NULL,
    created_at       REAL    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    last_error       TEXT    NOT NULL,
    next_attempt_at  REAL    NOT NULL,
    last_attempt_at  REAL,
    delivered_at     REAL,
    last_status_code INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS alert_deliveries_by_auction
    ON alert_deliveries (auction_id, created_at, delivery_id);
"""

_RULE_COLUMNS = (
    "rule_id, auction_id, kind, metric, threshold, window_seconds, hysteresis, cooldown_seconds, "
    "webhook_url, paused, secret, created_at, updated_at"
)
_DELIVERY_COLUMNS = (
    "delivery_id, rule_id, auction_id, event_type, payload, webhook_url, secret, created_at, status, "
    "attempts, last_error, next_attempt_at, last_attempt_at, delivered_at, last_status_code"
)


class SqliteAlertStore(SqliteCompanionStore):
    """The AlertStore port beside the snapshots of a :class:`SqliteSnapshotStore`.

    Sharing its connection and thread keeps one writer on the file (one process owns a SQLite file,
    so the claim of a delivery needs no more than its transaction). The purge of finished deliveries
    runs here, supervised, with the snapshots' retention.
    """

    PURGE_TASK = "sqlite-alert-delivery-purge"
    PURGED_MESSAGE = "Expired alert deliveries purged"

    @classmethod
    async def open(
        cls,
        snapshots: SqliteSnapshotStore,
        *,
        retention_days: int,
        clock: Callable[[], float],
        purge_interval_seconds: float = 60.0,
    ) -> SqliteAlertStore:
        """Creates the tables if needed and starts the periodic purge.

        Raises:
            StorageUnavailable: the tables cannot be created.
        """
        return await cls._open_beside(
            snapshots,
            _SCHEMA,
            retention_days=retention_days,
            clock=clock,
            purge_interval_seconds=purge_interval_seconds,
        )

    async def create_rule(self, rule: AlertRule) -> None:
        await self._snapshots.run(functools.partial(_create_rule, rule))

    async def get_rule(self, auction_id: str, rule_id: str) -> AlertRule | None:
        rows = await self._snapshots.run(
            lambda connection: connection.execute(
                f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE rule_id = ? AND auction_id = ?",
                (rule_id, auction_id),
            ).fetchall()
        )
        return _rule_of(rows[0]) if rows else None

    async def list_rules(self, auction_id: str) -> list[AlertRule]:
        rows = await self._snapshots.run(
            lambda connection: connection.execute(
                f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE auction_id = ? ORDER BY created_at, rule_id",
                (auction_id,),
            ).fetchall()
        )
        return [_rule_of(row) for row in rows]

    async def update_rule(self, auction_id: str, rule_id: str, spec: AlertRuleSpec, now: float) -> AlertRule:
        return await self._snapshots.run(functools.partial(_update_rule, auction_id, rule_id, spec, now))

    async def delete_rule(self, auction_id: str, rule_id: str) -> bool:
        now = self._clock()

        def delete(connection: sqlite3.Connection) -> bool:
            with write_transaction(connection):
                cursor = connection.execute(
                    "DELETE FROM alert_rules WHERE rule_id = ? AND auction_id = ?", (rule_id, auction_id)
                )
                if cursor.rowcount == 1:
                    connection.execute("DELETE FROM alert_rule_firings WHERE rule_id = ?", (rule_id,))
                    connection.execute("DELETE FROM alert_rule_states WHERE rule_id = ?", (rule_id,))
                    connection.execute(
                        "INSERT OR REPLACE INTO alert_rule_deletions (rule_id, deleted_at) VALUES (?, ?)",
                        (rule_id, now),
                    )
            return cursor.rowcount == 1

        return await self._snapshots.run(delete)

    async def list_active_rules(self, after_rule_id: str, limit: int) -> list[AlertRule]:
        return await self._rules_with_states(
            "r.paused = 0 AND r.rule_id > ? ORDER BY r.rule_id LIMIT ?", (after_rule_id, limit)
        )

    async def list_rule_changes(
        self, since: float, after: tuple[float, str] | None, limit: int
    ) -> list[AlertRule]:
        position = after or (since, "")
        return await self._rules_with_states(
            "r.updated_at >= ? AND (r.updated_at, r.rule_id) > (?, ?) "
            "ORDER BY r.updated_at, r.rule_id LIMIT ?",
            (since, *position, limit),
        )

    async def list_deleted_rules(self, since: float) -> list[str]:
        rows = await self._snapshots.run(
            lambda connection: connection.execute(
                "SELECT rule_id FROM alert_rule_deletions WHERE deleted_at >= ? ORDER BY deleted_at", (since,)
            ).fetchall()
        )
        return [str(row[0]) for row in rows]

    async def _rules_with_states(self, where: str, parameters: tuple[object, ...]) -> list[AlertRule]:
        columns = ", ".join(f"r.{column}" for column in _RULE_COLUMNS.split(", "))
        rows = await self._snapshots.run(
            lambda connection: connection.execute(
                f"SELECT {columns}, s.armed FROM alert_rules r "
                f"LEFT JOIN alert_rule_states s ON s.rule_id = r.rule_id WHERE {where}",
                parameters,
            ).fetchall()
        )
        return [
            dataclasses.replace(_rule_of(row[:-1]), armed=None if row[-1] is None else bool(row[-1]))
            for row in rows
        ]

    async def record_firing(
        self,
        auction_id: str,
        rule_id: str,
        fired_at: float,
        cooldown_seconds: float,
        *,
        firing_id: str = "",
        require_armed: bool = False,
    ) -> bool:
        def record(connection: sqlite3.Connection) -> bool:
            with write_transaction(connection):
                exists = connection.execute(
                    "SELECT 1 FROM alert_rules WHERE rule_id = ? AND auction_id = ?", (rule_id, auction_id)
                ).fetchone()
                if exists is None:
                    return False
                state = connection.execute(
                    "SELECT armed, last_firing_id FROM alert_rule_states WHERE rule_id = ?", (rule_id,)
                ).fetchone()
                if state is not None and firing_id and state[1] == firing_id:
                    return True
                if require_armed and state is not None and not state[0]:
                    return False
                cursor = connection.execute(
                    "INSERT INTO alert_rule_firings (rule_id, last_fired_at) VALUES (?, ?) "
                    "ON CONFLICT (rule_id) DO UPDATE SET last_fired_at = excluded.last_fired_at "
                    "WHERE excluded.last_fired_at - last_fired_at >= ?",
                    (rule_id, fired_at, cooldown_seconds),
                )
                if cursor.rowcount != 1:
                    return False
                connection.execute(
                    "INSERT INTO alert_rule_states (rule_id, armed, last_firing_id) VALUES (?, 0, ?) "
                    "ON CONFLICT (rule_id) DO UPDATE SET armed = 0, last_firing_id = excluded.last_firing_id",
                    (rule_id, firing_id),
                )
                return True

        return await self._snapshots.run(record)

    async def record_armed(self, reports: list[ArmedReport]) -> int:
        def record(connection: sqlite3.Connection) -> int:
            recorded = 0
            with write_transaction(connection):
                for report in reports:
                    row = connection.execute(
                        "SELECT updated_at FROM alert_rules WHERE rule_id = ? AND auction_id = ?",
                        (report.rule_id, report.auction_id),
                    ).fetchone()
                    if row is None or abs(row[0] - report.rule_updated_at) > UPDATED_AT_TOLERANCE_SECONDS:
                        continue
                    connection.execute(
                        "INSERT INTO alert_rule_states (rule_id, armed, last_firing_id) VALUES (?, ?, '') "
                        "ON CONFLICT (rule_id) DO UPDATE SET armed = excluded.armed",
                        (report.rule_id, int(report.armed)),
                    )
                    recorded += 1
            return recorded

        return await self._snapshots.run(record)

    async def get_delivery(self, delivery_id: str) -> AlertDelivery | None:
        rows = await self._snapshots.run(
            lambda connection: connection.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries WHERE delivery_id = ?", (delivery_id,)
            ).fetchall()
        )
        return _delivery_of(rows[0]) if rows else None

    async def enqueue_delivery(self, delivery: AlertDelivery) -> AlertDelivery:
        return await self._snapshots.run(functools.partial(_enqueue, delivery))

    async def claim_due_deliveries(self, now: float, lease_seconds: float, limit: int) -> list[AlertDelivery]:
        return await self._snapshots.run(functools.partial(_claim, now, now + lease_seconds, limit))

    async def finish_attempt(self, delivery: AlertDelivery) -> bool:
        return await self._snapshots.run(functools.partial(_finish, delivery))

    async def list_deliveries(
        self, auction_id: str, rule_id: str | None, limit: int, before: tuple[float, str] | None = None
    ) -> list[AlertDelivery]:
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries WHERE auction_id = ?"
        parameters: list[object] = [auction_id]
        if rule_id is not None:
            sql += " AND rule_id = ?"
            parameters.append(rule_id)
        if before is not None:
            sql += " AND (created_at, delivery_id) < (?, ?)"
            parameters += list(before)
        sql += " ORDER BY created_at DESC, delivery_id DESC LIMIT ?"
        parameters.append(limit)
        rows = await self._snapshots.run(lambda connection: connection.execute(sql, parameters).fetchall())
        return [_delivery_of(row) for row in rows]

    async def purge_expired(self) -> int:
        cutoff = self._clock() - self._retention_seconds

        deletions_cutoff = self._clock() - DELETED_RULES_KEPT_SECONDS

        def purge(connection: sqlite3.Connection) -> int:
            with write_transaction(connection):
                connection.execute(
                    "DELETE FROM alert_rule_deletions WHERE deleted_at < ?", (deletions_cutoff,)
                )
                return connection.execute(
                    "DELETE FROM alert_deliveries WHERE created_at < ? AND status != ?",
                    (cutoff, DeliveryStatus.PENDING.value),
                ).rowcount

        return await self._snapshots.run(purge)


def _rule_row(rule: AlertRule) -> tuple[object, ...]:
    spec = rule.spec
    return (
        rule.rule_id,
        rule.auction_id,
        spec.kind.value,
        spec.metric.value,
        spec.threshold,
        spec.window_seconds,
        spec.hysteresis,
        spec.cooldown_seconds,
        spec.webhook_url,
        int(spec.paused),
        rule.secret,
        rule.created_at,
        rule.updated_at,
    )


def _rule_of(row: tuple[Any, ...]) -> AlertRule:
    (
        rule_id,
        auction_id,
        kind,
        metric,
        threshold,
        window,
        hysteresis,
        cooldown,
        url,
        paused,
        secret,
        created,
        updated,
    ) = row
    spec = AlertRuleSpec(
        kind=AlertKind(kind),
        metric=AlertMetric(metric),
        threshold=int(threshold),
        window_seconds=int(window),
        hysteresis=int(hysteresis),
        cooldown_seconds=int(cooldown),
        webhook_url=str(url),
        paused=bool(paused),
    )
    return AlertRule(str(rule_id), str(auction_id), spec, str(secret), float(created), float(updated))


def _create_rule(rule: AlertRule, connection: sqlite3.Connection) -> None:
    with write_transaction(connection):
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM alert_rules WHERE auction_id = ?", (rule.auction_id,)
        ).fetchone()
        if count >= MAX_RULES_PER_AUCTION:
            raise TooManyAlertRules(f"an auction holds at most {MAX_RULES_PER_AUCTION} alert rules")
        connection.execute(
            f"INSERT INTO alert_rules ({_RULE_COLUMNS}) VALUES ({','.join('?' * 13)})", _rule_row(rule)
        )


def _update_rule(
    auction_id: str, rule_id: str, spec: AlertRuleSpec, now: float, connection: sqlite3.Connection
) -> AlertRule:
    with write_transaction(connection):
        row = connection.execute(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE rule_id = ? AND auction_id = ?",
            (rule_id, auction_id),
        ).fetchone()
        if row is None:
            raise AlertRuleNotFound(rule_id)
        rule = _rule_of(row).with_spec(spec, now)
        connection.execute("DELETE FROM alert_rules WHERE rule_id = ?", (rule_id,))
        # A new spec, a new evaluation state.
        connection.execute("DELETE FROM alert_rule_states WHERE rule_id = ?", (rule_id,))
        connection.execute(
            f"INSERT INTO alert_rules ({_RULE_COLUMNS}) VALUES ({','.join('?' * 13)})", _rule_row(rule)
        )
    return rule


def _delivery_row(d: AlertDelivery) -> tuple[object, ...]:
    return (
        d.delivery_id,
        d.rule_id,
        d.auction_id,
        d.event_type,
        d.payload,
        d.webhook_url,
        d.secret,
        d.created_at,
        d.status.value,
        d.attempts,
        d.last_error,
        d.next_attempt_at,
        d.last_attempt_at,
        d.delivered_at,
        d.last_status_code,
    )


def _delivery_of(row: tuple[Any, ...]) -> AlertDelivery:
    (
        delivery_id,
        rule_id,
        auction_id,
        event_type,
        payload,
        url,
        secret,
        created,
        status,
        attempts,
        last_error,
        next_at,
        last_at,
        delivered,
        code,
    ) = row
    return AlertDelivery(
        delivery_id=str(delivery_id),
        rule_id=str(rule_id),
        auction_id=str(auction_id),
        event_type=str(event_type),
        payload=str(payload),
        webhook_url=str(url),
        secret=str(secret),
        created_at=float(created),
        status=DeliveryStatus(status),
        attempts=int(attempts),
        last_error=str(last_error),
        next_attempt_at=float(next_at),
        last_attempt_at=None if last_at is None else float(last_at),
        delivered_at=None if delivered is None else float(delivered),
        last_status_code=int(code),
    )


def _enqueue(delivery: AlertDelivery, connection: sqlite3.Connection) -> AlertDelivery:
    with write_transaction(connection):
        connection.execute(
            f"INSERT INTO alert_deliveries ({_DELIVERY_COLUMNS}) VALUES ({','.join('?' * 15)}) "
            "ON CONFLICT (delivery_id) DO NOTHING",
            _delivery_row(delivery),
        )
        row = connection.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries WHERE delivery_id = ?", (delivery.delivery_id,)
        ).fetchone()
    return _delivery_of(row)


def _claim(now: float, lease_until: float, limit: int, connection: sqlite3.Connection) -> list[AlertDelivery]:
    with write_transaction(connection):
        rows = connection.execute(
            f"UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = ? "
            "WHERE delivery_id IN (SELECT delivery_id FROM alert_deliveries "
            "  WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) "
            f"RETURNING {_DELIVERY_COLUMNS}",
            (lease_until, DeliveryStatus.PENDING.value, now, limit),
        ).fetchall()
    return [_delivery_of(row) for row in rows]


def _finish(d: AlertDelivery, connection: sqlite3.Connection) -> bool:
    with write_transaction(connection):
        cursor = connection.execute(
            "UPDATE alert_deliveries SET status = ?, last_error = ?, next_attempt_at = ?, "
            "last_attempt_at = ?, delivered_at = ?, last_status_code = ? "
            "WHERE delivery_id = ? AND attempts = ? AND status = ?",
            (
                d.status.value,
                d.last_error,
                d.next_attempt_at,
                d.last_attempt_at,
                d.delivered_at,
                d.last_status_code,
                d.delivery_id,
                d.attempts,
                DeliveryStatus.PENDING.value,
            ),
        )
    return cursor.rowcount == 1
