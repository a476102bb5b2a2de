"""A span around each Google request, its guards' wait for quota included."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from opentelemetry.trace import SpanKind, Status, StatusCode

from jobsys.connectors.google.clients import Guard
from jobsys.connectors.google.costs import api_of
from jobsys.connectors.google.errors import GoogleError
from jobsys.engine import tracing
from jobsys.guards import Refused

T = TypeVar("T")


class Traced:
    """A :class:`Guard` that makes a client span ``google <method>`` of each call.

    Attributes: ``google.api``, ``google.method``, ``google.requests`` (a batch's
    parts) and ``google.status``: ``ok``, the HTTP status of a failure, or
    ``refused`` when a guard (quota, breaker) refused it before it was sent.
    """

    def __init__(self, inner: Guard) -> None:
        self.inner = inner

    def call(
        self,
        method: str,
        count: int,
        fn: Callable[[], T],
        *,
        part_errors: Callable[[T], Iterable[GoogleError]] | None = None,
    ) -> T:
        attributes = {"google.api": api_of(method), "google.method": method}
        with tracing.span(f"google {method}", SpanKind.CLIENT, attributes) as span:
            try:
                result = self.inner.call(method, count, fn, part_errors=part_errors)
            except (GoogleError, Refused) as e:
                if span is not None:
                    status = getattr(e, "status", None)
                    span.set_attribute("google.status", str(status or "refused"))
                    span.set_status(Status(StatusCode.ERROR, type(e).__name__))
                raise
            if span is not None:
                span.set_attribute("google.requests", count)
                span.set_attribute("google.status", "ok")
            return result


def traced(guard: Guard) -> Guard:
    """``guard`` with a span per call when this process traces, else ``guard`` itself."""
    return Traced(guard) if tracing.enabled() else guard
