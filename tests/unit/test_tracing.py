"""Tracing without services: configuration from OTEL_* variables, the engine's tracing
hook stepped by hand on the in-memory store, and the Google call span."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from celery import signals
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from jobsys.config import Settings
from jobsys.connectors.google.clients import UNGUARDED
from jobsys.connectors.google.errors import TransientError
from jobsys.engine import tracing
from jobsys.engine.dispatch import Dispatch, Why
from jobsys.engine.hooks import Attempt, Outcome, Recorded
from jobsys.engine.runtime import Runtime
from jobsys.errors import ConfigError, StoreUnavailableError
from jobsys.interfaces import obs
from jobsys.interfaces import tracing as setup
from jobsys.pipeline.traced import Traced, traced
from jobsys.store import Job, NewJob
from jobsys.store.memory import MemoryStore

ENDPOINT = "http://collector:4318"


def a_new_job(**changes: Any) -> NewJob:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": "u1",
        "kind": "unit.echo",
        "queue": "default",
        "payload": {"run_id": "run-1"},
        "max_attempts": 3,
    }
    return NewJob(**{**values, **changes})


@pytest.fixture
def rt() -> Runtime:
    return Runtime(Settings.from_variables({}), store=MemoryStore())


@pytest.fixture
def spans(rt: Runtime) -> Iterator[InMemorySpanExporter]:
    """This process traces to memory for the test (the runtime gets the hook)."""
    exporter = InMemorySpanExporter()
    assert setup.install(rt, exporter=exporter)
    try:
        yield exporter
    finally:
        setup.uninstall(rt)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, []),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT + "/v1/traces"}, ["otlp"]),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_endpoint_is_configured(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert setup.wanted(environ) == expected


CONSOLE_PROGRAM = """
import uuid
from jobsys.config import Settings
from jobsys.engine.runtime import Runtime
from jobsys.interfaces import tracing
from jobsys.store import NewJob
from jobsys.store.memory import MemoryStore
rt = Runtime(Settings.from_variables({}), store=MemoryStore())
assert tracing.install(rt)
new = NewJob(id=uuid.uuid4(), user_id="u1", kind="unit.echo", queue="default",
             payload={}, max_attempts=3)
rt.hooks.before_insert(new)
tracing.shutdown()
"""


def test_the_console_exporter_prints_spans_as_the_process_flushes() -> None:
    # Given a process configured by the standard variables only, with a service name
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "jobsys-test"}

    # When it enqueues a job and flushes
    done = subprocess.run(
        [sys.executable, "-c", CONSOLE_PROGRAM], env=env, capture_output=True, text=True
    )

    # Then the console exporter printed its span, under the service named
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["name"] == "enqueue unit.echo"
    assert printed["resource"]["attributes"]["service.name"] == "jobsys-test"


def test_the_service_is_named_jobsys_unless_configured(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    rt.hooks.before_insert(a_new_job())
    (made,) = spans.get_finished_spans()
    assert made.resource.attributes["service.name"] == "jobsys"


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="zipkin unknown"):
        setup.wanted({"OTEL_TRACES_EXPORTER": "console,zipkin"})


def test_without_configuration_nothing_is_traced_and_no_hook_is_added(rt: Runtime) -> None:
    # Given no OTEL_* variable and no trace file
    hooks = len(rt.hooks)

    # When the process installs tracing
    on = setup.configure(environ={}) or setup.install(rt)

    # Then it is off: no hook, no span, no header, no trace on the row
    assert not on and not tracing.enabled() and len(rt.hooks) == hooks
    new = rt.hooks.before_insert(a_new_job())
    assert new.trace is None
    dispatch = rt.hooks.before_dispatch(Dispatch.of_new(new, Why.FIRST, parent_id=None))
    assert dispatch.headers == {}
    assert traced(UNGUARDED) is UNGUARDED
    # And Celery's publish signal has no receiver of jobsys's: nothing runs per message
    assert not publish_receivers()


def publish_receivers() -> list[Any]:
    return [key for key, _ in signals.before_task_publish.receivers if "jobsys" in str(key)]


def test_tracing_on_listens_to_celerys_publishes(spans: InMemorySpanExporter) -> None:
    assert publish_receivers() != []


def test_an_enqueue_span_travels_in_the_row_and_the_message(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    # When a job is enqueued and its message dispatched, later, from its row
    new = rt.hooks.before_insert(a_new_job())
    rt.store.insert(new)
    row = {**rt.store.stale_queued(everything=True, lost_after=0.0, queues=None)[0]}
    dispatch = rt.hooks.before_dispatch(Dispatch.of_row(row, Why.SWEEP))

    # Then one producer span was made, and both the row and the header carry its context
    (made,) = spans.get_finished_spans()
    assert (made.name, made.kind) == ("enqueue unit.echo", SpanKind.PRODUCER)
    assert made.attributes is not None and made.attributes["jobsys.run_id"] == "run-1"
    expected = tracing.traceparent(made.get_span_context())
    assert new.trace == {"parent": expected}
    assert dispatch.headers == {"traceparent": expected}


def claimed(rt: Runtime, job_id: uuid.UUID) -> Job:
    job = rt.store.claim(job_id, None, lease=60.0, worker="w1", pid=1)
    assert job is not None
    return job


def fail() -> None:
    raise RuntimeError("planned")


def run_attempt(rt: Runtime, job: Job, outcome: Outcome, *, handler_fails: bool = True) -> None:
    """One attempt as the engine steps it: claim hook, handler, record, task end."""
    attempt = Attempt(job=job, worker="w1@host", headers={})
    rt.hooks.after_claim(attempt)
    if outcome is Outcome.RETRIED:
        if handler_fails:
            with pytest.raises(RuntimeError):
                rt.hooks.around_handler(attempt, fail)
        rt.store.requeue(job, delay=0.0, error={"attempt": job.attempt})
    else:
        rt.hooks.around_handler(attempt, lambda: None)
        rt.store.succeed(job, None)
    rt.hooks.after_record(Recorded(job=job, outcome=outcome, reason="flaky"))
    tracing.finish_task()


def test_a_retry_is_a_sibling_of_the_attempt_before_it_and_links_to_it(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    # Given a traced job whose first attempt is retried and whose second succeeds
    new = rt.hooks.before_insert(a_new_job())
    rt.store.insert(new)
    run_attempt(rt, claimed(rt, new.id), Outcome.RETRIED)
    run_attempt(rt, claimed(rt, new.id), Outcome.SUCCEEDED)

    # Then both attempts are consumer spans under the enqueue, in order
    enqueue, first, second = spans.get_finished_spans()
    assert [s.kind for s in (first, second)] == [SpanKind.CONSUMER] * 2
    assert [parent_of(first), parent_of(second)] == [enqueue.get_span_context().span_id] * 2
    assert [outcome_of(first), outcome_of(second)] == ["retried", "succeeded"]
    # And only the second links, to the first
    assert first.links == ()
    (link,) = second.links
    assert link.context.span_id == first.get_span_context().span_id
    assert dict(link.attributes or {}) == {"jobsys.link": "previous_attempt"}
    # And nothing stays current once the task ended
    assert tracing.current_traceparent() is None


@pytest.mark.parametrize("handler_fails", [True, False])
def test_the_row_keeps_the_failed_attempts_span_whether_or_not_its_handler_raised(
    rt: Runtime, spans: InMemorySpanExporter, handler_fails: bool
) -> None:
    # Given a traced job whose attempt fails in its handler, or after it (its result
    # could not be stored), and is retried
    new = rt.hooks.before_insert(a_new_job())
    rt.store.insert(new)
    run_attempt(rt, claimed(rt, new.id), Outcome.RETRIED, handler_fails=handler_fails)

    # Then the row holds the enqueue's context and the failed attempt's, once
    _, attempt = spans.get_finished_spans()
    assert rt.store.get_job(new.id).trace == {
        "parent": new.trace and new.trace["parent"],
        "last": tracing.traceparent(attempt.get_span_context()),
    }


def test_a_handlers_failure_is_kept_before_it_is_recorded(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    # Given a traced job's attempt running
    new = rt.hooks.before_insert(a_new_job())
    rt.store.insert(new)
    attempt = Attempt(job=claimed(rt, new.id), worker="w1", headers={})
    rt.hooks.after_claim(attempt)

    # When its handler raises (nothing recorded yet: the row is still running)
    with pytest.raises(RuntimeError):
        rt.hooks.around_handler(attempt, fail)

    # Then the row already names this attempt's span, for a retry claimed at once
    found = rt.store.get_job(new.id).trace
    assert found is not None and found["last"] == tracing.current_traceparent()
    tracing.finish_task()


class Unreachable(MemoryStore):
    """A store whose trace write fails (the database went away)."""

    def note_trace(self, job: Job, trace: dict[str, str]) -> None:
        raise StoreUnavailableError("PostgreSQL unavailable")


def test_a_trace_that_cannot_be_kept_leaves_the_handlers_failure_as_it_was() -> None:
    # Given tracing on a store that cannot keep traces, and an attempt running
    rt = Runtime(Settings.from_variables({}), store=Unreachable())
    assert setup.install(rt, exporter=InMemorySpanExporter())
    try:
        new = rt.hooks.before_insert(a_new_job())
        rt.store.insert(new)
        attempt = Attempt(job=claimed(rt, new.id), worker="w1", headers={})
        rt.hooks.after_claim(attempt)

        # When its handler raises, then the failure is the handler's, not the store's
        with pytest.raises(RuntimeError, match="planned"):
            rt.hooks.around_handler(attempt, fail)
        tracing.finish_task()
    finally:
        setup.uninstall(rt)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def outcome_of(span: ReadableSpan) -> Any:
    return (span.attributes or {}).get("jobsys.outcome")


def test_a_follow_up_enqueued_inside_an_attempt_is_its_child(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    # Given an attempt running, and a canvas step it enqueues
    parent = rt.hooks.before_insert(a_new_job())
    rt.store.insert(parent)
    rt.hooks.after_claim(Attempt(job=claimed(rt, parent.id), worker="w1", headers={}))
    step = rt.hooks.before_insert(a_new_job(kind="unit.step"))
    tracing.finish_task()

    # Then the step's enqueue span is the attempt's child, in the same trace
    enqueue, step_enqueue, attempt = spans.get_finished_spans()
    assert step_enqueue.name == "enqueue unit.step"
    assert parent_of(attempt) == enqueue.get_span_context().span_id
    assert parent_of(step_enqueue) == attempt.get_span_context().span_id
    assert len({s.get_span_context().trace_id for s in (enqueue, step_enqueue, attempt)}) == 1
    assert step.trace == {"parent": tracing.traceparent(step_enqueue.get_span_context())}
    # And an attempt nothing recorded ends when its task does
    assert outcome_of(attempt) == "unrecorded"


def test_a_google_call_is_a_client_span_with_its_api_method_and_status(
    spans: InMemorySpanExporter,
) -> None:
    # When one call succeeds and one fails with a 503
    guard = traced(UNGUARDED)
    assert isinstance(guard, Traced)
    guard.call("gmail.users.getProfile", 1, lambda: {"ok": True})

    def unavailable() -> None:
        raise TransientError("down", status=503)

    with pytest.raises(TransientError):
        guard.call("calendar.events.list", 1, unavailable)

    # Then each made a client span saying what it called and how it went
    found = [(s.name, s.kind, dict(s.attributes or {})) for s in spans.get_finished_spans()]
    assert found == [
        ("google gmail.users.getProfile", SpanKind.CLIENT, {
            "google.api": "gmail", "google.method": "gmail.users.getProfile",
            "google.requests": 1, "google.status": "ok",
        }),
        ("google calendar.events.list", SpanKind.CLIENT, {
            "google.api": "calendar", "google.method": "calendar.events.list",
            "google.status": "503",
        }),
    ]  # fmt: skip


def test_a_line_logged_inside_a_span_carries_its_trace_id(
    rt: Runtime, spans: InMemorySpanExporter
) -> None:
    # Given logging into a buffer, and an attempt running
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    obs.configure_logging(logging.INFO, fmt="json", stream=stream)
    new = rt.hooks.before_insert(a_new_job())
    rt.store.insert(new)
    try:
        structlog.get_logger("t").info("outside")
        rt.hooks.after_claim(Attempt(job=claimed(rt, new.id), worker="w1", headers={}))
        structlog.get_logger("t").info("inside")
        tracing.finish_task()
    finally:
        root.handlers, root.level = handlers, level

    # Then only the line written during the attempt names the trace
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    trace_id = new.trace and new.trace["parent"].split("-")[1]
    assert [(e["event"], e.get("trace_id")) for e in lines] == [
        ("outside", None),
        ("inside", trace_id),
    ]
