"""A span exporter that appends finished spans to a file, one JSON object a line.

For tests and debugging (``JOBSYS_TRACE_FILE``): every process of every node may
append to the same file. Each export is one ``write`` on a descriptor opened with
``O_APPEND``, so the lines of two processes never interleave.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext


class SpanFile(SpanExporter):
    """Appends each exported span to ``path`` as one JSON line (see :func:`as_record`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(as_record(s), default=str) + "\n" for s in spans).encode()
        try:
            with self._lock:
                os.write(self._descriptor(), data)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written before it returns

    def _descriptor(self) -> int:
        # Opened per process: a descriptor inherited across a fork would share the parent's.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd


def as_record(span: ReadableSpan) -> dict[str, Any]:
    """A span as a flat JSON-able record: ids in hex, times in ns since the epoch."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [_link(link.context, dict(link.attributes or {})) for link in span.links],
        "service": span.resource.attributes.get("service.name"),
        "pid": os.getpid(),
    }


def _link(ctx: SpanContext, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "attributes": attributes,
    }
