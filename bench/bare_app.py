"""Bare Celery, configured like jobsys where the benchmark says "same settings".

``celery -A bench.bare_app worker -P prefork -c 2`` (PYTHONPATH includes the repo).
Broker from BENCH_BROKER_URL; BENCH_BARE_EVENTS=1 turns task events on (as jobsys
does by default); otherwise Celery's defaults (events off).
"""

from __future__ import annotations

import os
import time

from celery import Celery

from bench.stamps import STAMPS_KEY, stamps

_events = os.environ.get("BENCH_BARE_EVENTS", "0") == "1"

app = Celery("bare")
app.conf.update(
    broker_url=os.environ["BENCH_BROKER_URL"],
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_send_sent_event=_events,
    worker_send_task_events=_events,
    worker_hijack_root_logger=False,
)


@app.task(name="bare.noop", ignore_result=True, acks_late=True)
def noop(user_id: str) -> None:
    return None


@app.task(name="bare.stamp", bind=True, ignore_result=True, acks_late=True)
def stamp(self, user_id: str) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    stamps().rpush(STAMPS_KEY, f"{self.request.id} {now!r}")
