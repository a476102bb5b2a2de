"""SQL for alerting: each series' baseline, and incidents with their notification outbox.

An evaluation runs in one transaction under an advisory lock (two detectors at
once: the second skips), and a partial unique index allows one open incident
per series, so no incident fires twice. An incident's two notifications (fired,
resolved) are sent after the evaluation commits, each in a transaction of its
own that locks the row (``FOR UPDATE SKIP LOCKED``) and marks it sent: a
webhook that is down leaves them unsent, and the next evaluation tries again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from jobsys.store.gateway import Store

Notice = Literal["firing", "resolved"]
_LOCK_KEY = 0x616C7274  # "alrt"
_COLUMNS = (
    "id, signal, subject, value, baseline, threshold, peak, opened_at, resolved_at,"
    " resolved_value, fired_sent_at, resolved_sent_at, send_attempts, send_error"
)
_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")
_LAST = sa.text("SELECT max(evaluated_at) FROM alert_baselines")
_SERIES = sa.text("SELECT signal, subject, n, level, recent, streak, firing FROM alert_baselines")
_SAVE = sa.text(
    """
INSERT INTO alert_baselines (signal, subject, n, level, recent, streak, firing, evaluated_at)
SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(signal text, subject text, n int,
  level float8, recent jsonb, streak int, firing bool), LATERAL (SELECT CAST(:now AS timestamptz)) t
ON CONFLICT (signal, subject) DO UPDATE SET n = EXCLUDED.n, level = EXCLUDED.level,
  recent = EXCLUDED.recent, streak = EXCLUDED.streak, firing = EXCLUDED.firing,
  evaluated_at = EXCLUDED.evaluated_at
"""
)
_OPEN = sa.text(
    f"""
INSERT INTO alerts (signal, subject, value, baseline, threshold, peak, opened_at)
VALUES (:signal, :subject, :value, :baseline, :threshold, :value, :now)
ON CONFLICT (signal, subject) WHERE resolved_at IS NULL DO NOTHING
RETURNING {_COLUMNS}
"""
)
_RESOLVE = sa.text(
    f"""
UPDATE alerts SET resolved_at = :now, resolved_value = :value
WHERE signal = :signal AND subject = :subject AND resolved_at IS NULL
RETURNING {_COLUMNS}
"""
)
_PEAK = sa.text(
    "UPDATE alerts SET peak = :value WHERE signal = :signal AND subject = :subject"
    " AND resolved_at IS NULL AND peak < :value"
)
_UNSENT = sa.text(
    "SELECT id FROM alerts WHERE fired_sent_at IS NULL"
    " OR (resolved_at IS NOT NULL AND resolved_sent_at IS NULL) ORDER BY id LIMIT :limit"
)
_TAKE = sa.text(
    f"""
SELECT {_COLUMNS} FROM alerts WHERE id = :id
  AND (fired_sent_at IS NULL OR (resolved_at IS NOT NULL AND resolved_sent_at IS NULL))
FOR UPDATE SKIP LOCKED
"""
)
_SENT = {
    "firing": sa.text("UPDATE alerts SET fired_sent_at = now(), send_error = NULL WHERE id = :id"),
    "resolved": sa.text(
        "UPDATE alerts SET resolved_sent_at = now(), send_error = NULL WHERE id = :id"
    ),
}
_FAILED = sa.text(
    "UPDATE alerts SET send_attempts = send_attempts + 1, send_error = :error WHERE id = :id"
)
_LIST = sa.text(
    f"""
SELECT {_COLUMNS} FROM alerts
WHERE resolved_at IS NULL OR opened_at >= :since OR resolved_at >= :since
ORDER BY resolved_at IS NOT NULL, opened_at DESC, id DESC LIMIT :limit
"""
)


@dataclasses.dataclass(frozen=True)
class SeriesRow:
    """A series' stored state (the detector's ``Series`` with its key)."""

    signal: str
    subject: str
    n: int
    level: float
    recent: tuple[float, ...]
    streak: int
    firing: bool


@dataclasses.dataclass(frozen=True)
class Alert:
    """An incident as stored: open while ``resolved_at`` is None."""

    id: int
    signal: str
    subject: str
    value: float
    baseline: float
    threshold: float
    peak: float
    opened_at: datetime
    resolved_at: datetime | None
    resolved_value: float | None
    fired_sent_at: datetime | None
    resolved_sent_at: datetime | None
    send_attempts: int
    send_error: str | None

    @classmethod
    def from_row(cls, row: Any) -> Alert:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    @property
    def state(self) -> Notice:
        return "firing" if self.resolved_at is None else "resolved"

    def unsent(self) -> Notice | None:
        """The notification to send next: firing first, then resolved."""
        if self.fired_sent_at is None:
            return "firing"
        if self.resolved_at is not None and self.resolved_sent_at is None:
            return "resolved"
        return None

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data


class Evaluation:
    """One evaluation's transaction, holding the alerting lock."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def last_evaluated(self) -> datetime | None:
        value = self._conn.execute(_LAST).scalar()
        return value if isinstance(value, datetime) else None

    def series(self) -> list[SeriesRow]:
        rows = self._conn.execute(_SERIES).mappings()
        return [SeriesRow(**{**r, "recent": tuple(float(x) for x in r["recent"])}) for r in rows]

    def save(self, rows: list[SeriesRow], now: datetime) -> None:
        if rows:
            data = json.dumps([dataclasses.asdict(r) for r in rows])
            self._conn.execute(_SAVE, {"rows": data, "now": now})

    def open(
        self, key: tuple[str, str], value: float, baseline: float, threshold: float, now: datetime
    ) -> Alert | None:
        """Open the series' incident; None if one is open already."""
        params = {"signal": key[0], "subject": key[1], "value": value, "now": now}
        row = (
            self._conn.execute(_OPEN, {**params, "baseline": baseline, "threshold": threshold})
            .mappings()
            .first()
        )
        return Alert.from_row(row) if row else None

    def resolve(self, key: tuple[str, str], value: float | None, now: datetime) -> Alert | None:
        params = {"signal": key[0], "subject": key[1], "value": value, "now": now}
        row = self._conn.execute(_RESOLVE, params).mappings().first()
        return Alert.from_row(row) if row else None

    def peak(self, key: tuple[str, str], value: float) -> None:
        self._conn.execute(_PEAK, {"signal": key[0], "subject": key[1], "value": value})


class AlertStore:
    """SQL for alerting, on the same engines as :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def evaluation(self) -> Iterator[Evaluation | None]:
        """A transaction holding the alerting lock; None while another evaluation holds it."""
        with self._store.transaction() as conn:
            mine = bool(conn.execute(_LOCK, {"key": _LOCK_KEY}).scalar())
            yield Evaluation(conn) if mine else None

    def unsent(self, limit: int = 100) -> list[int]:
        """Incidents with a notification to send, oldest first."""
        with self._store.transaction() as conn:
            return [int(r[0]) for r in conn.execute(_UNSENT, {"limit": limit})]

    def send(self, alert_id: int, deliver: Callable[[Alert, Notice], str | None]) -> bool | None:
        """Send the incident's next notification with ``deliver`` (None: sent; else the
        error) while its row is locked, and record the outcome.

        Returns True when sent, False when it failed, None when there was nothing to send
        (sent meanwhile, or another process is sending it).
        """
        with self._store.transaction() as conn:
            row = conn.execute(_TAKE, {"id": alert_id}).mappings().first()
            notice = Alert.from_row(row).unsent() if row else None
            if row is None or notice is None:
                return None
            error = deliver(Alert.from_row(row), notice)
            if error is None:
                conn.execute(_SENT[notice], {"id": alert_id})
            else:
                conn.execute(_FAILED, {"id": alert_id, "error": error[:500]})
            return error is None

    def recent(self, *, since: datetime, limit: int = 100) -> list[Alert]:
        """Open incidents, then those opened or resolved since ``since``; newest first."""
        with self._store.transaction() as conn:
            rows = conn.execute(_LIST, {"since": since, "limit": limit}).mappings().all()
        return [Alert.from_row(r) for r in rows]
