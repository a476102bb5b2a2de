"""Celery's configuration, built from :class:`~jobsys.config.Settings` in one dictionary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kombu import Queue

from jobsys.engine import runtime
from jobsys.engine.registry import registry
from jobsys.engine.transport import TRANSPORT

if TYPE_CHECKING:
    from jobsys.config import Settings

CONTROL_QUEUE = "jobsys.control"
DEFAULT_QUEUE = "default"
ALERTS_TASK = "jobsys.alerts.evaluate"  # jobsys/alerts/task.py
# Redis serves priority 0 first; jobsys priorities run 0 (normal) to 9 (most urgent).
PRIORITY_STEPS = list(range(10))


def celery_config(rt: runtime.Runtime | None = None) -> dict[str, Any]:
    """The handful of Celery options jobsys sets (design §6), from the runtime's settings.

    Queues are those of the kinds registered so far; a module imported later
    (``JOBSYS_IMPORTS``) adds its kinds' queues as it registers them.
    """
    rt = rt or runtime.current()
    s, urls = rt.settings, rt.urls
    transport = {
        "visibility_timeout": s.visibility_timeout,
        "health_check_interval": 10,
        "socket_keepalive": True,
        "queue_order_strategy": "priority",
        "priority_steps": PRIORITY_STEPS,
        "sep": ":",
    }
    queue_names = sorted({DEFAULT_QUEUE, CONTROL_QUEUE, *registry.queues()})
    return {
        "broker_url": urls.broker,
        **_redis_transport(urls.broker),
        "result_backend": urls.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": s.visibility_timeout},
        "visibility_timeout": s.visibility_timeout,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": s.default_timeout,
        "task_soft_time_limit": s.default_soft_timeout,
        # A broker blip must not kill work in flight: the attempt finishes and records
        # its outcome in Postgres; the message Redis restores is then a duplicate,
        # which the conditional claim ignores.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_send_sent_event": s.task_events,
        "worker_send_task_events": s.task_events,
        "result_expires": 7 * 24 * 3600,
        "worker_max_tasks_per_child": 10_000,
        "worker_max_memory_per_child": 512_000,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": [Queue(n, routing_key=n) for n in queue_names],
        "task_routes": {
            "jobsys.sweep": {"queue": CONTROL_QUEUE},
            "jobsys.schedule.tick": {"queue": CONTROL_QUEUE},
            ALERTS_TASK: {"queue": CONTROL_QUEUE},
        },
        "imports": list(s.imports),
        "beat_schedule": _beat_schedule(s),
        "worker_hijack_root_logger": False,
    }


def _beat_schedule(s: Settings) -> dict[str, Any]:
    # No sweeper entry: every worker sweeps from its heartbeat thread (worker.py),
    # and a task every few seconds would fill Flower's task list with sweeps.
    entries: dict[str, Any] = {
        # The alert detector: once a minute, and it sends no task events either.
        "jobsys-alerts": {
            "task": ALERTS_TASK,
            "schedule": s.alert_interval,
            "options": {"queue": CONTROL_QUEUE, "expires": s.alert_interval},
        },
    }
    if "jobsys.tasks" in s.imports:  # the sync pipeline is loaded: sync every user periodically
        entries["jobsys-schedule"] = {
            "task": "jobsys.schedule.tick",
            "schedule": s.schedule_tick,
            "options": {"queue": CONTROL_QUEUE, "expires": s.schedule_tick},
        }
    return entries


def _redis_transport(broker_url: str) -> dict[str, Any]:
    """jobsys's Redis transport for a Redis broker (see :mod:`jobsys.engine.transport`)."""
    if broker_url.split("://", 1)[0] not in ("redis", "rediss"):
        return {}
    return {"broker_transport": TRANSPORT}
