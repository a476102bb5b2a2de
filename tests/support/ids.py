"""Job ids out of the results that enqueue calls return."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from jobsys import JobResult


def job_ids(results: Iterable[JobResult]) -> list[uuid.UUID]:
    return [r.job_id for r in results]
