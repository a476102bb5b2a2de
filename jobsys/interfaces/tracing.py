"""Tracing set-up: the OpenTelemetry SDK from the standard ``OTEL_*`` variables, once
per process, and the Celery signals that carry a trace through every worker process.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names exporters (``otlp``, ``console``;
``none`` is off), when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (``otlp`` then), or when
``JOBSYS_TRACE_FILE`` names a file to append spans to (JSON lines,
:mod:`jobsys.interfaces.spanfile`). The SDK reads the rest itself:
``OTEL_SERVICE_NAME`` (default ``jobsys``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``_ARG``, the OTLP exporter's endpoint, headers and timeout.

A worker node configures it in its main process (``worker_init``: the sweeper and
the promoter publish too) and again in each prefork child once forked
(``worker_process_init``: a batch processor's thread does not survive a fork);
a child flushes its spans as it exits, the node as it stops. The API and the CLI
configure it as they build their runtime; a program of one's own calls
:func:`install` with its runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import signals

from jobsys.engine import runtime as _runtime
from jobsys.engine import tracing
from jobsys.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from jobsys.engine.runtime import Runtime

EXPORTERS = ("otlp", "console")
_provider: TracerProvider | None = None
# An exporter given in code (not by a variable): a forked child traces to its copy too.
_exporter: SpanExporter | None = None


def wanted(environ: Mapping[str, str], trace_file: Path | None = None) -> list[str]:
    """The exporters the environment asks for (empty: tracing off).

    Raises:
        ConfigError: ``OTEL_TRACES_EXPORTER`` names one jobsys does not know.
    """
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(names)}: {', '.join(unknown)} unknown"
            f" (jobsys knows {', '.join(EXPORTERS)}, or none)"
        )
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not names and endpoint:
        names = ["otlp"]
    return names + (["file"] if trace_file is not None else [])


def configure(
    trace_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> bool:
    """Set this process's tracer from the environment (and ``exporter``); True if on.

    Calling it again (a forked child) replaces the previous provider, unflushed; an
    ``exporter`` given once is kept for the calls after it.

    Raises:
        ConfigError: an unknown exporter is asked for.
    """
    global _provider, _exporter
    names = wanted(os.environ if environ is None else environ, trace_file)
    exporter = _exporter = exporter or _exporter
    if not names and exporter is None:
        _provider = None
        tracing.use(None)
        _per_task(False)
        return False
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = _new_provider()
    for name in names:
        if name == "file" and trace_file is not None:
            from jobsys.interfaces.spanfile import SpanFile

            # Written as each span ends: a killed process loses nothing it finished.
            provider.add_span_processor(SimpleSpanProcessor(SpanFile(trace_file)))
        elif name != "file":
            provider.add_span_processor(_batched(name))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider = provider
    tracing.use(provider.get_tracer("jobsys"))
    _per_task(True)
    return True


def _new_provider() -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "jobsys"}))
    # The sampler comes from OTEL_TRACES_SAMPLER (parent-based, always on by default).
    return TracerProvider(resource=resource)


def _batched(name: str) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def install(
    rt: Runtime, *, trace_file: Path | None = None, exporter: SpanExporter | None = None
) -> bool:
    """Configure tracing for this process and add the tracing hook to ``rt``; True if on.

    ``trace_file`` stands for ``JOBSYS_TRACE_FILE``; ``exporter`` is one more exporter,
    written to as each span ends (an in-memory one in a benchmark).
    """
    if not configure(trace_file or rt.settings.trace_file, exporter=exporter):
        return False
    if not any(isinstance(h, tracing.TracingHook) for h in rt.hooks):
        rt.hooks.add(tracing.TracingHook(rt))
    return True


def uninstall(rt: Runtime) -> None:
    """Flush, turn tracing off in this process and take the hook off ``rt``."""
    global _provider, _exporter
    shutdown()
    _provider, _exporter = None, None
    tracing.use(None)
    _per_task(False)
    for hook in list(rt.hooks):
        if isinstance(hook, tracing.TracingHook):
            rt.hooks.remove(hook)


def shutdown() -> None:
    """Export what is buffered and stop (a process about to exit)."""
    found = _provider
    if found is not None:
        found.shutdown()


# -- worker processes ---------------------------------------------------------------


@signals.worker_init.connect
def _node_init(**_: Any) -> None:
    install(_runtime.current())


@signals.worker_process_init.connect
def _child_init(**_: Any) -> None:
    # The hook came with the fork; the provider is made again for this process.
    if tracing.enabled():
        configure(_runtime.current().settings.trace_file)


@signals.worker_process_shutdown.connect
def _child_exiting(**_: Any) -> None:
    shutdown()


@signals.worker_shutdown.connect
def _node_stopping(**_: Any) -> None:
    shutdown()


# -- every task and publish: connected only while tracing is on ----------------------


def _publishing(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # Celery's own publishes (a plain task of a canvas): the current span goes along.
    if headers is not None and tracing.TRACEPARENT not in headers:
        found = tracing.current_traceparent()
        if found is not None:
            headers[tracing.TRACEPARENT] = found


def _task_started(task: Any = None, **_: Any) -> None:
    if getattr(task, "spec", None) is None:  # a job's attempt is the hook's (after_claim)
        tracing.attach_remote(getattr(task.request, tracing.TRACEPARENT, None))


def _task_ended(**_: Any) -> None:
    tracing.finish_task()


_PER_TASK = (
    (signals.before_task_publish, _publishing),
    (signals.task_prerun, _task_started),
    (signals.task_postrun, _task_ended),
)


def _per_task(on: bool) -> None:
    # With tracing off, Celery's publish signal keeps no receiver: it returns at once.
    for signal, receiver in _PER_TASK:
        uid = f"jobsys.tracing.{receiver.__name__}"
        if on:
            signal.connect(receiver, weak=False, dispatch_uid=uid)
        else:
            signal.disconnect(receiver, dispatch_uid=uid)
