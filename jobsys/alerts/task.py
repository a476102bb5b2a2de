"""The beat task that runs one alert evaluation every ``JOBSYS_ALERT_INTERVAL`` seconds."""

from __future__ import annotations

from typing import Any

from jobsys.alerts.evaluate import evaluate
from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.celeryconf import ALERTS_TASK, CONTROL_QUEUE


# send_events=False: a task every minute would crowd Flower's task list.
@app.task(name=ALERTS_TASK, ignore_result=True, queue=CONTROL_QUEUE, send_events=False)
def evaluate_alerts() -> dict[str, Any]:
    """One evaluation, as a periodic task under ``celery beat``."""
    return evaluate(runtime.current()).as_dict()
