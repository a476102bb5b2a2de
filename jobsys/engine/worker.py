"""Worker lifecycle: registration, heartbeats and the embedded sweeper.

Each worker node (the Celery main process) is a row in ``workers`` with a
heartbeat. A background thread beats every ``worker_heartbeat`` seconds and
runs a sweeper pass every ``sweep_interval`` (one node at a time wins the
advisory lock), so recovery does not depend on ``celery beat`` running.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import structlog
from celery import signals

from jobsys.config import get_settings
from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.sweeper import Sweeper

log = structlog.get_logger("jobsys.worker")


class Heart(threading.Thread):
    def __init__(self, name: str, queues: list[str], concurrency: int) -> None:
        super().__init__(name="jobsys-heartbeat", daemon=True)
        self.node = name
        self.queues = queues
        self.concurrency = concurrency
        self.stopping = threading.Event()
        self.registered = False
        self.last_sweep = 0.0

    def run(self) -> None:
        settings = get_settings()
        try:
            sweeper().note_broker()
        except Exception as e:  # the broker may be down at start; sweeps will tell
            log.warning("worker.broker_unreachable", error=str(e), worker=self.node)
        while not self.stopping.is_set():
            try:
                self.beat()
                if time.monotonic() - self.last_sweep >= settings.sweep_interval:
                    self.last_sweep = time.monotonic()
                    sweeper().run()
            except Exception as e:  # keep beating through database and broker outages
                log.warning("heartbeat.failed", error=str(e), worker=self.node)
            self.stopping.wait(settings.worker_heartbeat)

    def beat(self) -> None:
        store = runtime.store()
        if not self.registered or not store.heartbeat_worker(self.node, os.getpid()):
            store.register_worker(
                self.node,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                concurrency=self.concurrency,
            )
            self.registered = True

    def stop(self) -> None:
        self.stopping.set()
        try:
            runtime.store().stop_worker(self.node, os.getpid())
        except Exception as e:  # a stopping worker must not hang on a dead database
            log.warning("worker.stop_unrecorded", error=str(e))


_heart: Heart | None = None


def sweeper() -> Sweeper:
    return Sweeper(app, runtime.store(), get_settings(), runtime.resolve_urls().broker)


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    runtime.reset(inherited=True)


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    global _heart
    name = str(getattr(sender, "hostname", None) or socket.gethostname())
    queues = sorted(app.amqp.queues.consume_from or app.amqp.queues)
    concurrency = int(getattr(getattr(sender, "controller", None), "concurrency", 0) or 0)
    _heart = Heart(name, queues, concurrency)
    _heart.start()


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    if _heart is not None:
        _heart.stop()


@app.task(name="jobsys.sweep", ignore_result=True, queue="jobsys.control")
def sweep() -> dict[str, Any]:
    """One sweeper pass, as a periodic task under ``celery beat``."""
    return sweeper().run().as_dict()
