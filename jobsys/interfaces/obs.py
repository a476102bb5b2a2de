"""Logs and metrics of jobsys processes: structlog configured once, and a worker node's
``/metrics``.

Logs. :func:`configure_logging` routes structlog's events and the standard
library's records (Celery's own) through one chain of processors into one
handler: JSON lines when ``JOBSYS_LOG_FORMAT=json`` or when the stream is not a
terminal, readable console lines on a terminal. A worker or beat configures it
from Celery's ``setup_logging`` signal: with a receiver connected, Celery
neither installs its own handlers (whose format put ``WARNING/ForkPoolWorker-2``
and a second timestamp before every line) nor redirects standard output to a
``celery.redirected`` logger at WARNING, which is how every structlog line,
printed to stdout by structlog's default logger, used to come out. A pool
child's ``print()`` still becomes a log line (its stdout only is redirected,
after the banner), at Celery's redirect level.

Every line written while a job runs carries ``job_id``, ``user_id``, ``kind``,
``attempt`` and, for a pipeline step, ``run_id`` (the payload's): the task's
``task_prerun`` binds what its message says, the claim (:class:`JobLogContext`)
adds the attempt, ``task_postrun`` clears them. With tracing on, each line also
carries the ``trace_id`` of the span current where it was written.

Metrics. With ``JOBSYS_METRICS_PORT`` set, a node starts in multiprocess mode:
``celeryd_init`` (before any metric has a value, and before the pool forks)
points ``PROMETHEUS_MULTIPROC_DIR`` at a folder of the node's own, emptied, and
switches prometheus-client's values to it; the pool children inherit it; the main process
serves ``/metrics`` once the node is ready; a child that exits hands back its
live gauges (``mark_process_dead``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any

import structlog
from celery import signals
from opentelemetry import trace

from jobsys.config import Settings
from jobsys.engine import runtime, tracing
from jobsys.engine.hooks import Attempt, Hook

log = structlog.get_logger("jobsys.obs")
_OURS = "_jobsys_handler"  # marks the root handler configure_logging installed


def configure_logging(
    level: int = logging.INFO, *, fmt: str | None = None, stream: IO[str] | None = None
) -> None:
    """Send structlog events and standard logging records, at ``level`` and above,
    through the same processors to ``stream`` (stderr by default).

    ``fmt`` is ``json`` or ``console``; None chooses console on a terminal, else JSON.
    Calling it again replaces the previous configuration.
    """
    stream = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
        _add_trace_id,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, _OURS, False)] + [handler]
    root.setLevel(level)
    # Alembic announces each of its plugins at INFO whenever it loads (readyz, migrations).
    logging.getLogger("alembic.runtime.plugins").setLevel(max(level, logging.WARNING))


def log_format(settings: Settings, stream: IO[str]) -> str:
    """``json`` or ``console``: the setting, else console only on a terminal."""
    if settings.log_format is not None:
        return settings.log_format
    return "console" if _isatty(stream) else "json"


def _renderer(fmt: str | None, stream: IO[str]) -> Any:
    if fmt is None:
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.processors.JSONRenderer(default=str)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def _add_pid(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Which process wrote it: a node's main process or one of its pool children.
    event.setdefault("pid", os.getpid())
    return event


def _add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # The current span's trace, with tracing on (off: one global read, nothing added).
    if tracing.enabled():
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event.setdefault("trace_id", f"{ctx.trace_id:032x}")
    return event


# -- a job's ids on every line ------------------------------------------------------


class JobLogContext(Hook):
    """Binds the claimed attempt's ids for every line logged until the task ends."""

    def after_claim(self, attempt: Attempt) -> None:
        job = attempt.job
        bind_job(str(job.id), job.user_id, job.kind, job.payload, attempt=job.attempt)


def bind_job(
    job_id: str, user_id: Any, kind: str, payload: Any, *, attempt: int | None = None
) -> None:
    """Bind a job's ids to the log context of this thread (or task)."""
    fields: dict[str, Any] = {"job_id": job_id, "user_id": user_id, "kind": kind}
    if attempt is not None:
        fields["attempt"] = attempt
    run_id = payload.get("run_id") if isinstance(payload, dict) else None
    if run_id is not None:
        fields["run_id"] = str(run_id)
    structlog.contextvars.bind_contextvars(**fields)


@signals.task_prerun.connect
def _task_started(
    task_id: str = "", task: Any = None, args: Any = (), kwargs: Any = None, **_: Any
) -> None:
    structlog.contextvars.clear_contextvars()
    if getattr(task, "spec", None) is None:  # not a job kind (the sweep, a canvas helper)
        return
    user_id = args[0] if args else None
    bind_job(task_id, user_id, task.spec.kind, kwargs or {})


@signals.task_postrun.connect
def _task_ended(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


# -- worker and beat processes ------------------------------------------------------


@signals.setup_logging.connect
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    settings = runtime.current().settings
    configure_logging(_level(loglevel), fmt=log_format(settings, sys.stderr))


def _level(value: Any) -> int:
    """A logging level from Celery's ``-l`` (a number, or a name such as ``info``)."""
    if isinstance(value, int) and value:
        return value
    found = logging.getLevelName(str(value or "WARNING").upper())
    return found if isinstance(found, int) else logging.WARNING


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    # Standard output only: the log handler writes to stderr, which must stay the stream.
    from jobsys.engine.app import app

    if app.conf.worker_redirect_stdouts:
        logger = logging.getLogger("celery.redirected")
        level = app.conf.worker_redirect_stdouts_level
        app.log.redirect_stdouts_to_logger(logger, loglevel=level, stdout=True, stderr=False)


@signals.celeryd_init.connect
def _node_starting(sender: Any = None, options: Any = None, **_: Any) -> None:
    # Celery's logging setup comes after worker_init, whose first sweep already logs.
    settings = runtime.current().settings
    level = _level((options or {}).get("loglevel"))
    configure_logging(level, fmt=log_format(settings, sys.stderr))
    if settings.metrics_port is not None:
        prepare_multiprocess(node_dir(settings, str(sender or "")))


def node_dir(settings: Settings, node: str) -> Path:
    """The folder of a node's multiprocess metrics (``JOBSYS_METRICS_DIR``/node)."""
    base = settings.metrics_dir or Path(tempfile.gettempdir()) / "jobsys-metrics"
    return base / (re.sub(r"[^\w.@-]", "_", node) or "node")


def prepare_multiprocess(directory: Path) -> None:
    """Empty ``directory`` and make this process and its children keep metrics there.

    Files left by a previous run of the node would add its counts to this one's.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if "prometheus_client" in sys.modules:
        # Celery imports the job modules (and with the guards prometheus-client, which
        # picks its value class on import) before celeryd_init. A value is made when a
        # metric gets its label values, and jobsys gives none before this: every value
        # made from now on, in this process and its children, is kept in the folder.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    rt = runtime.current()
    rt.hooks.add(_LOG_CONTEXT)
    if rt.settings.metrics_port is not None:
        from jobsys.interfaces.metrics import JobMetrics

        rt.hooks.add(JobMetrics())


_LOG_CONTEXT = JobLogContext()


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    # In the main process, after the pool forked: no child holds the listening socket.
    rt = runtime.current()
    port = rt.settings.metrics_port
    if port is None:
        return
    from prometheus_client import start_http_server

    from jobsys.interfaces.metrics import registry

    try:
        start_http_server(port, registry=registry(rt))
    except OSError as e:  # the port is taken (another node on this host): run on, unscraped
        log.error("metrics.not_serving", port=port, error=str(e))
        return
    log.info("metrics.serving", port=port)


@signals.worker_process_shutdown.connect
def _child_exiting(pid: Any = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(int(pid or os.getpid()))  # type: ignore[no-untyped-call]
