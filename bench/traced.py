"""The ``jobsys+tracing`` variant: every process traces to an in-memory exporter.

Loaded by the worker through ``JOBSYS_IMPORTS=bench.kinds,bench.traced`` (its
``jobsys_hooks`` runs in the node's main process before the pool forks; each
child keeps tracing to its own copy of the exporter).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobsys.interfaces import tracing


def jobsys_hooks(rt: Any) -> list[Any]:
    # install() adds the tracing hook itself; nothing else to return.
    tracing.install(rt, exporter=InMemorySpanExporter())
    return []
