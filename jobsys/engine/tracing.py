"""Traces of jobs: an engine hook that makes a span of every enqueue and every attempt.

Off unless :func:`use` gives it a tracer (``jobsys.interfaces.tracing`` does, from
the ``OTEL_*`` variables); the hook is added only then, so with tracing off no
span is made, no header added and no column written.

- ``before_insert``: a producer span ``enqueue <kind>``, a child of whatever span
  is current (a running attempt's, for the steps a pipeline job starts); its
  context goes in the row (``jobs.trace``) as ``parent``.
- ``before_dispatch``: the message's ``traceparent`` header, from the row's
  context (every path publishes from a job, a new job or a row), else the current span.
- ``after_claim``: a consumer span named after the kind, a child of the header's
  context (else the row's), linked to the previous attempt's span (the row's
  ``last``), and current until the task ends, so the canvas steps Celery applies
  after the handler returned (a chain's next step, a chord's callback) are its children.
- ``around_handler``: a handler that raises has its attempt's span context kept
  in the row (``last``) before the failure is recorded, for the next attempt to
  link to (an extra statement on failures only).
- ``after_record``: the outcome.

:func:`finish_task` (at the end of every Celery task) ends what is still open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from celery.exceptions import Ignore, Retry
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from jobsys.engine.hooks import Attempt, Hook, Outcome, Recorded
from jobsys.store import Job, NewJob

if TYPE_CHECKING:
    from jobsys.engine.dispatch import Dispatch
    from jobsys.engine.runtime import Runtime

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
_local = threading.local()
# Outcomes after which the job runs again: the next attempt links to this one.
_AGAIN = (Outcome.RETRIED, Outcome.POSTPONED)
_FAILED = (Outcome.RETRIED, Outcome.DEAD)
# What an attempt's link to the attempt before it says it is.
_PREVIOUS = {"jobsys.link": "previous_attempt"}
log = structlog.get_logger("jobsys.tracing")


def use(tracer: Tracer | None) -> None:
    """Trace with ``tracer`` from now on in this process (None: tracing off)."""
    global _tracer
    _tracer = tracer


def enabled() -> bool:
    """Whether this process traces (one global read: cheap on every path)."""
    return _tracer is not None


def traceparent(ctx: SpanContext) -> str:
    """A span context as a W3C ``traceparent`` header value."""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def span_context(value: str | None) -> SpanContext | None:
    """The remote span context a ``traceparent`` value names (None if absent or malformed)."""
    if not value:
        return None
    found = trace.get_current_span(_PROPAGATOR.extract({TRACEPARENT: value}))
    ctx = found.get_span_context()
    return ctx if ctx.is_valid else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span current in this thread, if any."""
    ctx = trace.get_current_span().get_span_context()
    return traceparent(ctx) if ctx.is_valid else None


@contextlib.contextmanager
def span(name: str, kind: SpanKind, attributes: Mapping[str, Any]) -> Iterator[Span | None]:
    """A span around the block, current within it (None, and nothing made, when off)."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes)) as found:
        yield found


@dataclasses.dataclass
class _Open:
    """What a task opened in this thread: its attempt's span (if a job) and the context token."""

    token: object
    span: Span | None = None
    job_id: Any = None
    origin: str | None = None
    ended: bool = False
    # The row holds this attempt's span context (``last``) already.
    noted: bool = False


def attach_remote(value: str | None) -> None:
    """Make the span a ``traceparent`` names current for the rest of this task (a plain
    Celery task of a canvas, such as the pipeline's ``mark``, so what it applies joins
    the trace)."""
    finish_task()
    remote = span_context(value)
    if remote is not None:
        token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))
        _local.open = _Open(token)


def finish_task() -> None:
    """End the attempt's span if nothing recorded it, and restore the context (task end)."""
    found: _Open | None = getattr(_local, "open", None)
    _local.open = None
    if found is None:
        return
    if found.span is not None and not found.ended:
        found.span.set_attribute("jobsys.outcome", "unrecorded")
        found.span.end()
    otel_context.detach(found.token)  # type: ignore[arg-type]


class TracingHook(Hook):
    """Spans of enqueues and attempts; see the module's docstring."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def before_insert(self, new: NewJob) -> NewJob:
        tracer = _tracer
        if tracer is None:
            return new
        made = tracer.start_span(
            f"enqueue {new.kind}", kind=SpanKind.PRODUCER, attributes=_new_attributes(new)
        )
        made.end()
        return dataclasses.replace(new, trace={"parent": traceparent(made.get_span_context())})

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        if _tracer is None or TRACEPARENT in dispatch.headers:
            return dispatch
        parent = (dispatch.trace or {}).get("parent") or current_traceparent()
        if parent is None:
            return dispatch
        return dispatch.evolve(headers={**dispatch.headers, TRACEPARENT: parent})

    def after_claim(self, attempt: Attempt) -> None:
        tracer = _tracer
        if tracer is None:
            return
        finish_task()  # a task that ended without its task_postrun (defensive)
        job, stored = attempt.job, attempt.job.trace or {}
        origin = attempt.headers.get(TRACEPARENT) or stored.get("parent")
        remote = span_context(origin)
        parent = trace.set_span_in_context(trace.NonRecordingSpan(remote)) if remote else None
        last = span_context(stored.get("last"))
        made = tracer.start_span(
            job.kind,
            context=parent,
            kind=SpanKind.CONSUMER,
            links=[Link(last, _PREVIOUS)] if last else None,
            attributes=_job_attributes(attempt),
        )
        token = otel_context.attach(trace.set_span_in_context(made))
        _local.open = _Open(token, made, job.id, origin)

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (Ignore, Retry):
            raise  # Celery's control flow (a step replaced by its canvas), not a failure
        except Exception as e:
            found = _open_for(attempt.job.id)
            if found is not None and found.span is not None:
                found.span.record_exception(e)
                # Before the failure is recorded: once the job is back in the queue,
                # its next attempt may be claimed at once, and must find this one.
                self._keep_last(attempt.job, found)
            raise

    def after_record(self, recorded: Recorded) -> None:
        found = _open_for(recorded.job.id)
        if found is None or found.span is None or found.ended:
            return  # recorded elsewhere (the sweeper, the node's main process)
        made, outcome = found.span, recorded.outcome
        made.set_attribute("jobsys.outcome", outcome.value)
        if recorded.reason:
            made.set_attribute("jobsys.reason", recorded.reason)
        if outcome in _FAILED:
            made.set_status(Status(StatusCode.ERROR, recorded.reason))
        if outcome in _AGAIN and not found.noted:
            # Failed outside the handler (its result could not be stored): late, but kept.
            job = recorded.job
            if outcome is Outcome.POSTPONED:  # handed its attempt back: the row's is one less
                job = job.evolve(attempt=job.attempt - 1)
            self._keep_last(job, found)
        made.end()
        found.ended = True

    def _keep_last(self, job: Job, found: _Open) -> None:
        if found.span is None:
            return
        kept = {"last": traceparent(found.span.get_span_context())}
        if found.origin:
            kept["parent"] = found.origin
        found.noted = True
        try:
            self.runtime.store.note_trace(job, kept)
        except Exception as e:  # a trace must never change how the attempt ends
            log.warning("tracing.not_kept", job_id=str(job.id), error=str(e))


def _open_for(job_id: Any) -> _Open | None:
    found: _Open | None = getattr(_local, "open", None)
    return found if found is not None and found.job_id == job_id else None


def _new_attributes(new: NewJob) -> dict[str, Any]:
    found: dict[str, Any] = {
        "jobsys.job_id": str(new.id),
        "jobsys.kind": new.kind,
        "jobsys.user_id": new.user_id,
        "jobsys.queue": new.queue,
    }
    run_id = new.payload.get("run_id")
    if run_id is not None:
        found["jobsys.run_id"] = str(run_id)
    return found


def _job_attributes(attempt: Attempt) -> dict[str, Any]:
    job = attempt.job
    found: dict[str, Any] = {
        "jobsys.job_id": str(job.id),
        "jobsys.kind": job.kind,
        "jobsys.user_id": job.user_id,
        "jobsys.queue": job.queue,
        "jobsys.attempt": job.attempt,
        "jobsys.worker": attempt.worker,
    }
    run_id = job.payload.get("run_id") if isinstance(job.payload, dict) else None
    if run_id is not None:
        found["jobsys.run_id"] = str(run_id)
    return found
