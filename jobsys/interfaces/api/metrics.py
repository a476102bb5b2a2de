"""``GET /metrics``: Prometheus's scrape of the API process (no token, like ``/healthz``).

It serves the fleet's gauges read from PostgreSQL (queue depths, oldest due
job, dead letters, workers), cached for a few seconds, and this process's own
metrics, or every process's when ``PROMETHEUS_MULTIPROC_DIR`` is set for the API.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from jobsys.interfaces import metrics
from jobsys.interfaces.api.auth import RuntimeDep

router = APIRouter()
_lock = threading.Lock()


@router.get("/metrics", include_in_schema=False)
def scrape(request: Request, rt: RuntimeDep) -> Response:
    """The Prometheus text exposition of this API process."""
    return Response(metrics.render(_registry(request, rt)), media_type=CONTENT_TYPE_LATEST)


def _registry(request: Request, rt: RuntimeDep) -> CollectorRegistry:
    # One per app, so that its gauges' cache serves every scrape of the app.
    state = request.app.state
    with _lock:
        found: CollectorRegistry | None = getattr(state, "metrics_registry", None)
        if found is None:
            found = state.metrics_registry = metrics.registry(rt)
    return found
