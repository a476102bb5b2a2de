"""One evaluation: read the signals, step every series, open and resolve incidents, notify.

The series' state and the incidents live in PostgreSQL (``store/alerts.py``),
so the beat task keeps nothing between runs; the step runs in one transaction
under an advisory lock, so two evaluations at once cannot both fire. An
evaluation sooner than half ``JOBSYS_ALERT_INTERVAL`` after the last one is
skipped: a second beat, or a task delivered twice, must not count one minute's
value twice toward a streak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobsys.alerts import signals
from jobsys.alerts.detector import Event, Series, step
from jobsys.alerts.sinks import deliver, log_notice
from jobsys.config import Settings
from jobsys.engine.runtime import Runtime
from jobsys.store.alerts import Alert, AlertStore, Evaluation, SeriesRow

Reader = Callable[[Runtime, datetime], dict[tuple[str, str], float]]


@dataclasses.dataclass(frozen=True)
class Report:
    """What one evaluation did."""

    ran: bool
    skipped: str | None = None
    series: int = 0
    fired: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = ()
    sent: int = 0
    unsent: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "skipped": self.skipped,
            "series": self.series,
            "fired": [a.id for a in self.fired],
            "resolved": [a.id for a in self.resolved],
            "sent": self.sent,
            "unsent": self.unsent,
        }


def evaluate(rt: Runtime, now: datetime | None = None, *, read: Reader = signals.read) -> Report:
    """Evaluate every signal at ``now`` (default: the clock), then send what is owed.

    Parameters:
        read: where the values come from (a simulation feeds synthetic series).
    """
    now = now or datetime.now(UTC)
    values = read(rt, now)
    store = AlertStore(rt.postgres)
    with store.evaluation() as ev:
        if ev is None:
            return Report(False, "another evaluation is running")
        last = ev.last_evaluated()
        if last is not None and (now - last).total_seconds() < rt.settings.alert_interval / 2:
            return Report(False, f"the last evaluation was at {last.isoformat()}")
        count, fired, resolved = _judge(ev, values, now, rt.settings)
    for alert in fired:
        log_notice(alert, "firing")
    for alert in resolved:
        log_notice(alert, "resolved")
    sent, unsent = deliver(store, rt.settings)
    return Report(True, None, count, fired, resolved, sent, unsent)


def _judge(
    ev: Evaluation, values: dict[tuple[str, str], float], now: datetime, settings: Settings
) -> tuple[int, tuple[Alert, ...], tuple[Alert, ...]]:
    stored = {(r.signal, r.subject): r for r in ev.series()}
    fired: list[Alert] = []
    resolved: list[Alert] = []
    rows: list[SeriesRow] = []
    for key in sorted(stored.keys() | values.keys()):
        signal = signals.CATALOGUE.get(key[0])
        if signal is None:  # a signal this version no longer watches
            continue
        row = stored.get(key)
        before = _series(row) if row else signals.fresh(signal, settings)
        done = step(before, values.get(key), signals.policy(signal, settings))
        if done.event is Event.FIRE and done.value is not None:
            opened = ev.open(key, done.value, done.baseline, done.threshold, now)
            fired += [opened] if opened else []
        elif done.event is Event.RESOLVE:
            closed = ev.resolve(key, done.value, now)
            resolved += [closed] if closed else []
        elif done.series.firing and done.value is not None:
            ev.peak(key, done.value)
        rows.append(SeriesRow(key[0], key[1], **_fields(done.series)))
    ev.save(rows, now)
    return len(rows), tuple(fired), tuple(resolved)


def _series(row: SeriesRow) -> Series:
    return Series(row.n, row.level, row.recent, row.streak, row.firing)


def _fields(series: Series) -> dict[str, Any]:
    return dataclasses.asdict(series)
