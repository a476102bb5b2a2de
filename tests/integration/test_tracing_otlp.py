"""OTLP export from a real worker node: with only ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the
node's attempt spans reach a collector over OTLP/HTTP, under ``OTEL_SERVICE_NAME``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from jobsys import Status
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.wait import wait_until
from tests.support.webhook import Receiver, receiver

pytestmark = pytest.mark.integration


def _spans(request: ExportTraceServiceRequest) -> Iterator[dict[str, Any]]:
    for resource_spans in request.resource_spans:
        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                attributes = {a.key: a.value.string_value for a in span.attributes}
                yield {
                    "name": span.name,
                    "service": resource.get("service.name"),
                    "job_id": attributes.get("jobsys.job_id"),
                    "outcome": attributes.get("jobsys.outcome"),
                }


def exported_spans(received: Receiver) -> list[dict[str, Any]]:
    with received.lock:
        return [span for request in received.bodies for span in _spans(request)]


def test_a_node_exports_its_attempt_spans_over_otlp(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    with receiver(decode=ExportTraceServiceRequest.FromString) as received:
        # Given a node with only the standard OTLP variables set (spans batched 100 ms)
        start_workers(
            1,
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": received.base,
                "OTEL_SERVICE_NAME": "jobsys-otlp-test",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )

        # When two jobs run on it
        ids = [kinds.echo.delay("user-1", value=n).id for n in range(2)]
        for i in ids:
            job = wait_until(lambda i=i: jobsys_env.finished(uuid.UUID(i)), timeout=60, what="jobs")
            assert job.status is Status.SUCCEEDED

        # Then the collector receives each attempt's span, under the service's name
        def exported() -> list[dict[str, Any]] | None:
            spans = exported_spans(received)
            found = [s for s in spans if s["name"] == "test.echo" and s["job_id"] in ids]
            return found if len(found) == len(ids) else None

        spans = wait_until(exported, timeout=30, what="the attempt spans at the collector")
        assert sorted(s["job_id"] for s in spans) == sorted(ids)
        assert {(s["service"], s["outcome"]) for s in spans} == {("jobsys-otlp-test", "succeeded")}
        assert set(received.paths) == {"/v1/traces"}
