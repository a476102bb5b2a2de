"""Publishing job messages: Postgres holds the job, the message only says "run it now"."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

MAX_PRIORITY = 9


def publish(
    app: Celery,
    *,
    job_id: uuid.UUID,
    user_id: str,
    kind: str,
    queue: str,
    priority: int = 0,
    countdown: float = 0.0,
    payload: dict[str, Any] | None = None,
    producer: Any = None,
) -> None:
    """Send the message that makes a worker claim ``job_id``.

    The payload rides along only so that Flower shows it; workers execute the
    payload stored in Postgres.
    """
    app.send_task(
        kind,
        args=(user_id,),
        kwargs=payload or {},
        task_id=str(job_id),
        queue=queue,
        priority=MAX_PRIORITY - priority,
        countdown=countdown if countdown > 0 else None,
        producer=producer,
        # Outcomes live in Postgres; a result would make send_task SUBSCRIBE to
        # a result channel per message (and UNSUBSCRIBE later): two round trips.
        ignore_result=True,
    )
