"""Worker lifecycle: registration, heartbeats, the embedded sweeper, revokes and unknown kinds.

Each worker node (the Celery main process) is a row in ``workers`` with a
heartbeat. A background thread beats every ``worker_heartbeat`` seconds and
runs a sweeper pass every ``sweep_interval`` (one node at a time wins the
advisory lock), so recovery does not depend on ``celery beat`` running.

Two of Celery's own paths are made to tell PostgreSQL:

- a revoke (``AsyncResult.revoke()``, Flower's Revoke button) only fills the
  worker's in-memory revoked set; a watcher cancels each newly revoked job in
  PostgreSQL, so a queued one is never re-published and a running one stops
  at its next ``ctx.heartbeat()``;
- a message whose kind this worker does not know is rejected by Celery; the
  job's row counts the delivery, and after ``unknown_kind_deliveries`` of them
  the job is dead-lettered (reason ``unknown_kind``, naming the worker)
  instead of being re-published by every sweep forever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

import structlog
from celery import signals
from celery.worker import state as worker_state

from jobsys.engine import runtime
from jobsys.engine.admission import Admitter, Promoter
from jobsys.engine.app import app
from jobsys.engine.celeryconf import CONTROL_QUEUE
from jobsys.engine.dispatch import Dispatch, Why
from jobsys.engine.failures import Failure
from jobsys.engine.hooks import Outcome
from jobsys.engine.operations import cancel_quietly
from jobsys.engine.outcome import notify, settle_failure
from jobsys.engine.runtime import Runtime
from jobsys.engine.sweeper import Sweeper

log = structlog.get_logger("jobsys.worker")
REVOKE_POLL = 0.25  # s between looks at Celery's revoked set


class Heart(threading.Thread):
    def __init__(self, rt: Runtime, name: str, queues: list[str], concurrency: int) -> None:
        super().__init__(name="jobsys-heartbeat", daemon=True)
        self.rt = rt
        self.node = name
        self.queues = queues
        self.concurrency = concurrency
        self.stopping = threading.Event()
        self.registered = False
        self.last_sweep = 0.0

    def run(self) -> None:
        settings = self.rt.settings
        self.last_sweep = time.monotonic()  # the node swept before it began consuming
        while not self.stopping.is_set():
            try:
                self.beat()
                if time.monotonic() - self.last_sweep >= settings.sweep_interval:
                    self.last_sweep = time.monotonic()
                    Sweeper(self.rt).run()
            except Exception as e:  # keep beating through database and broker outages
                log.warning("heartbeat.failed", error=str(e), worker=self.node)
            self.stopping.wait(settings.worker_heartbeat)

    def beat(self) -> None:
        store = self.rt.store
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
            self.rt.store.stop_worker(self.node, os.getpid())
        except Exception as e:  # a stopping worker must not hang on a dead database
            log.warning("worker.stop_unrecorded", error=str(e))


class RevokeWatcher(threading.Thread):
    """Cancels in PostgreSQL each job newly added to Celery's revoked set."""

    def __init__(self, rt: Runtime, node: str) -> None:
        super().__init__(name="jobsys-revokes", daemon=True)
        self.rt, self.node = rt, node
        self.stopping = threading.Event()
        self.seen: set[str] = set()

    def run(self) -> None:
        while not self.stopping.wait(REVOKE_POLL):
            try:
                self.look()
            except Exception as e:  # the database may be away; the ids wait in the set
                log.warning("revoke.unrecorded", error=str(e), worker=self.node)

    def look(self) -> None:
        try:
            revoked = set(worker_state.revoked)
        except RuntimeError:  # changed while copied: look again next time
            return
        for ident in revoked - self.seen:
            job_id = _job_id(ident)
            if job_id is not None:
                cancel_quietly(self.rt, job_id, actor=f"revoke@{self.node}")
            self.seen.add(ident)


def _job_id(ident: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(ident))
    except ValueError:
        return None


def unknown_kind(rt: Runtime, job_id: uuid.UUID, kind: str, node: str) -> None:
    """A delivery of a job whose kind this worker does not know: count it, bury it at the limit."""
    limit = rt.settings.unknown_kind_deliveries
    noted = rt.store.note_unknown_kind(job_id, worker=node, limit=limit)
    if noted is None:
        return
    deliveries, letter = noted
    if letter is not None:
        log.error(
            "job.unknown_kind", job_id=str(job_id), kind=kind, worker=node, dead_letter=letter
        )
        notify(rt, rt.store.get_job(job_id), Outcome.DEAD, reason="unknown_kind", actor=node)
        return
    # Another worker may know it (a fleet mid-deploy): send it again at once.
    log.warning(
        "job.unknown_kind", job_id=str(job_id), kind=kind, worker=node, deliveries=deliveries
    )
    rt.dispatcher.send(Dispatch.of_job(rt.store.get_job(job_id), Why.SWEEP))


class _Node:
    heart: Heart | None = None
    revokes: RevokeWatcher | None = None
    promoter: Promoter | None = None
    registered = False  # by start_node, before the pool started


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:
    # Hooks come with the job modules (the pipeline's run repair, say).
    rt = runtime.current()
    rt.load_imports()
    node = str(getattr(sender, "hostname", None) or socket.gethostname())
    concurrency = getattr(sender, "concurrency", 0)
    _Node.registered = start_node(rt, node, concurrency if isinstance(concurrency, int) else 0)


def start_node(rt: Runtime, node: str, concurrency: int) -> bool:
    """Before the node consumes anything: retire its lost predecessor, sweep, register.

    In this order, and before the pool starts:

    - a process of this node that is gone (killed, then the node restarted under
      the same name) has its running jobs retried now, not after their leases;
    - the first sweep checks the broker: a fresh or flushed one has no epoch
      key and its queued jobs are published again, so a job enqueued once the
      fleet is up is never published twice by a node's first sweep;
    - the node is alive in ``workers`` before its first claim, so no sweep can
      take its fresh claims for a dead worker's.

    Returns whether the node registered (the database may be down at start;
    the heartbeat registers it then).
    """
    try:
        retire_predecessor(rt, node)
        sweeper = Sweeper(rt)
        sweeper.note_broker()
        sweeper.run()
    except Exception as e:  # the broker or database may be down at start; later sweeps will tell
        log.warning("worker.first_sweep_failed", error=str(e), worker=node)
    try:
        rt.store.register_worker(
            node,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=_queues(),
            concurrency=concurrency,
        )
        return True
    except Exception as e:
        log.warning("worker.unregistered", error=str(e), worker=node)
        return False


def retire_predecessor(rt: Runtime, node: str) -> int:
    """Retry now the running jobs of this node's previous process, if it is gone.

    Gone means: its row is alive on this host under another pid that no longer
    exists. A predecessor still draining (warm shutdown) keeps its jobs, and one
    on another host is left to its heartbeat, which only the sweeper can judge.
    """
    me = os.getpid()
    old = next((w for w in rt.store.list_workers() if w.name == node), None)
    if old is None or old.pid == me or old.hostname != socket.gethostname() or _running(old.pid):
        return 0
    if not rt.store.retire_worker(node, old.pid, by=node):
        return 0
    lost = Failure(
        "WorkerRestarted",
        f"worker {node} restarted (pid {me}); its process {old.pid} is gone",
        "",
        "worker_lost",
        True,
    )
    jobs = [j for j in rt.store.expired([node]) if j.worker == node]
    for job in jobs:
        settle_failure(rt, job, lost, actor=node, why=Why.EXPIRED)
    resent = _resend_reserved(rt, old.queues)
    log.warning(
        "worker.predecessor_lost", worker=node, pid=old.pid, retried=len(jobs), resent=resent
    )
    return len(jobs)


def _resend_reserved(rt: Runtime, queues: list[str]) -> int:
    """Publish again, now, the admitted jobs of ``queues`` that nobody has claimed.

    Messages the lost process had reserved sit in Redis's unacknowledged set until
    the visibility timeout, and the sweeper's lost path waits ``lost_after`` for an
    empty queue. With admission the broker holds only a buffer (about a second of
    work), so sending every unclaimed admitted job again costs at most a buffer of
    duplicates (1,000 at most here), which their claims ignore. (Without admission
    that would be the whole queue: left to the sweeper.)
    """
    if not rt.settings.admission or not queues:
        return 0
    rows = rt.store.stale_queued(everything=False, lost_after=0, queues=queues, limit=1000)
    rt.dispatcher.send_many([Dispatch.of_row(r, Why.SWEEP) for r in rows])
    return len(rows)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def _queues() -> list[str]:
    return sorted(app.amqp.queues.consume_from or app.amqp.queues)


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    runtime.current().forked()


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    rt = runtime.current()
    name = str(getattr(sender, "hostname", None) or socket.gethostname())
    concurrency = int(getattr(getattr(sender, "controller", None), "concurrency", 0) or 0)
    _Node.heart = Heart(rt, name, _queues(), concurrency)
    _Node.heart.registered = _Node.registered
    _Node.heart.start()
    _Node.revokes = RevokeWatcher(rt, name)
    _Node.revokes.start()
    if rt.settings.admission:
        job_queues = [q for q in _queues() if q != CONTROL_QUEUE]
        _Node.promoter = Promoter(Admitter(rt, job_queues, concurrency))
        _Node.promoter.start()


@signals.task_received.connect
def _task_received(**_: Any) -> None:
    # A message left the broker's ready buffer: the promoter may refill it.
    if _Node.promoter is not None:
        _Node.promoter.received()


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    if _Node.revokes is not None:
        _Node.revokes.stopping.set()
    if _Node.promoter is not None:
        _Node.promoter.stop()
    if _Node.heart is not None:
        _Node.heart.stop()


@signals.task_revoked.connect
def _task_revoked(request: Any = None, **_: Any) -> None:
    # A revoked message discarded on delivery: its queued job is cancelled for good.
    job_id = _job_id(getattr(request, "id", ""))
    if job_id is not None:
        cancel_quietly(
            runtime.current(), job_id, actor=f"revoke@{getattr(request, 'hostname', '')}"
        )


@signals.task_unknown.connect
def _task_unknown(sender: Any = None, name: str = "", id: str = "", **_: Any) -> None:
    job_id = _job_id(id)
    if job_id is None:
        return
    node = str(getattr(sender, "hostname", None) or socket.gethostname())
    try:
        unknown_kind(runtime.current(), job_id, name, node)
    except Exception as e:  # the database may be away; the sweeper re-publishes it later
        log.warning("unknown_kind.unrecorded", job_id=id, error=str(e))


@app.task(name="jobsys.sweep", ignore_result=True, queue=CONTROL_QUEUE, send_events=False)
def sweep() -> dict[str, Any]:
    """One sweeper pass, on request (``jobsys.sweep.delay()``); it sends no task
    events, so Flower's task list shows jobs, not housekeeping."""
    return Sweeper(runtime.current()).run().as_dict()
