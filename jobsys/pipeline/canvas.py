"""The pipeline's Celery canvases, built in one pure module.

Celery rewrites ``chain(group(a, b), c, d)`` into ``chord(group(a, b), c | d)``
as it is built: ingestion's two halves run in parallel, then the fan-out
planner, then processing. The planner replaces itself with
``chord(normalize batches, extract | mark)``; the trailing ``mark`` (a plain
Celery task) takes over the planner's task id, which ``Task.replace`` hands to
the replacement's last task, so no job row is asked to run twice. The unit
tests pin these shapes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

BATCH = 100


def sync_canvas(tasks: dict[str, Any], user_id: str, run_id: uuid.UUID, *, full: bool) -> Any:
    """ingest (Gmail || Calendar) -> plan (replaced by the fan-out) -> process."""
    step = {"run_id": str(run_id), "full": full}
    return chain(
        group(
            tasks["sync.ingest_gmail"].si(user_id, **step),
            tasks["sync.ingest_calendar"].si(user_id, **step),
        ),
        tasks["sync.plan"].si(user_id, **step),
        tasks["sync.process"].si(user_id, **step),
    )


def batches(
    message_ids: Sequence[str], event_ids: Sequence[str], size: int = BATCH
) -> list[tuple[list[str], list[str]]]:
    """Split pending ids into batches of at most ``size`` items, events after messages."""
    items = [("m", i) for i in message_ids] + [("e", i) for i in event_ids]
    out = []
    for start in range(0, len(items), size):
        part = items[start : start + size]
        out.append(([i for k, i in part if k == "m"], [i for k, i in part if k == "e"]))
    return out


def fan_out(
    tasks: dict[str, Any],
    user_id: str,
    run_id: uuid.UUID,
    parts: list[tuple[list[str], list[str]]],
    mark: Signature[Any],
) -> Any:
    """chord(normalize each batch, extract | mark); just extract | mark when nothing is new."""
    run = str(run_id)
    tail = chain(tasks["sync.extract"].si(user_id, run_id=run), mark)
    if not parts:
        return tail
    header = [
        tasks["sync.normalize"].si(user_id, run_id=run, message_ids=m, event_ids=e)
        for m, e in parts
    ]
    return chord(header, tail)
