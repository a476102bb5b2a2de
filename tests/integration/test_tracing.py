"""Traces across real worker processes: one ``sync_user`` run is one trace over two nodes
(a postponed ingestion's next attempt linked to it), and a retried attempt, published
again from its row, links to the attempt before it."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobsys.interfaces import tracing
from jobsys.tasks import sync_user
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    pipeline_factory,  # noqa: F401  (fixture)
)
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]
Span = dict[str, Any]
PHASES = (
    "sync.ingest_gmail", "sync.ingest_calendar", "sync.plan", "sync.normalize",
    "sync.extract", "sync.process",
)  # fmt: skip


@pytest.fixture
def span_file(jobsys_env: Env, tmp_path: Path) -> Iterator[Path]:
    """This process traces to a file that the workers given its path append to as well."""
    path = tmp_path / "spans.jsonl"
    assert tracing.install(jobsys_env.runtime, trace_file=path)
    try:
        yield path
    finally:
        tracing.uninstall(jobsys_env.runtime)


def read_spans(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def attempts(spans: list[Span], kind: str) -> list[Span]:
    return [s for s in spans if s["kind"] == "CONSUMER" and s["name"] == kind]


def once_recorded(path: Path, kind: str, outcome: str, count: int = 1) -> list[Span] | None:
    """Every span so far, once ``count`` attempts of ``kind`` have ended with ``outcome``."""
    spans = read_spans(path)
    ended = [s for s in attempts(spans, kind) if s["attributes"].get("jobsys.outcome") == outcome]
    return spans if len(ended) >= count else None


def ancestors(span: Span, by_id: dict[str, Span]) -> list[str]:
    """The span ids above ``span``, nearest first, as far as the file has them."""
    found, parent = [], span["parent_id"]
    while parent is not None and parent in by_id:
        found.append(parent)
        parent = by_id[parent]["parent_id"]
    return found


def test_a_sync_run_is_one_trace_across_two_nodes_and_every_phase(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
    span_file: Path,
) -> None:
    # Given one user with enough mail and events for three normalization batches, and
    # two nodes tracing to the same file: one runs ingestion, the other every CPU phase
    p = pipeline_factory(users=1, messages_per_user=150, events_per_user=60)
    env = {**p.worker_env, "JOBSYS_TRACE_FILE": str(span_file)}
    io_node, cpu_node = (
        start_workers(1, env=env, queues="default,ingest")[0],
        start_workers(1, env=env, queues="cpu")[0],
    )
    (user_id,) = p.users.values()

    # When the user syncs in full, enqueued from this (traced) process, and Google's
    # first answer is a 429 (the ingestion job that gets it is postponed, then runs again)
    p.emulator.set_faults(throttle_next=1)
    job_id = uuid.UUID(sync_user.delay(user_id, full=True).id)
    result = p.finished_job(job_id).result
    assert result is not None
    run_id = result["run_id"]
    run = p.wait_run(uuid.UUID(run_id))
    assert run["status"] == "succeeded", run
    spans = wait_until(
        lambda: once_recorded(span_file, "sync.process", "succeeded"),
        timeout=30,
        what="the processing attempt's span",
    )

    # Then the enqueue made here is the root, and every span of the run is in its trace
    (root,) = [s for s in spans if s["name"] == "enqueue sync.user"]
    assert root["parent_id"] is None and root["kind"] == "PRODUCER"
    by_id = {s["span_id"]: s for s in spans}
    run_spans = [s for s in spans if s["attributes"].get("jobsys.run_id") == run_id]
    assert {s["trace_id"] for s in spans} == {root["trace_id"]}
    # And each phase ran once, every normalization batch among them, and the ingestion
    # that met the 429 twice...
    batches = run["steps"]["normalize"]["batches"]
    assert batches == 3
    ran = Counter(s["name"] for s in run_spans if s["kind"] == "CONSUMER")
    (again,) = [k for k in ("sync.ingest_gmail", "sync.ingest_calendar") if ran[k] == 2]
    assert ran == {**dict.fromkeys(PHASES, 1), "sync.normalize": batches, again: 2}
    # ...each a descendant of the root, as is every other span of the trace
    for s in spans:
        if s is not root:
            assert ancestors(s, by_id)[-1] == root["span_id"], s
    outcomes = Counter(s["attributes"]["jobsys.outcome"] for s in run_spans
                       if s["kind"] == "CONSUMER")  # fmt: skip
    assert outcomes == {"succeeded": sum(ran.values()) - 1, "postponed": 1}
    # And the trace crossed both nodes and the test process
    nodes = {s["attributes"]["jobsys.worker"] for s in spans if s["kind"] == "CONSUMER"}
    assert nodes == {io_node.node, cpu_node.node}
    assert len({s["pid"] for s in spans}) >= 3

    # And the postponed attempt and the next are siblings, the next linked to it
    first, second = sorted(attempts(spans, again), key=lambda s: s["start"])
    assert first["attributes"]["jobsys.outcome"] == "postponed"
    assert first["parent_id"] == second["parent_id"]
    assert by_id[first["parent_id"]]["name"] == f"enqueue {again}"
    assert [(x["span_id"], x["attributes"]) for x in second["links"]] == [
        (first["span_id"], {"jobsys.link": "previous_attempt"})
    ]

    # And each Google call is a client span right under its ingestion job's attempt,
    # the 429 under the attempt it postponed
    calls = [s for s in spans if s["name"].startswith("google ")]
    parents = Counter(by_id[s["parent_id"]]["name"] for s in calls)
    assert set(parents) == {"sync.ingest_gmail", "sync.ingest_calendar"}
    assert {s["kind"] for s in calls} == {"CLIENT"}
    statuses = Counter(s["attributes"]["google.status"] for s in calls)
    assert statuses == {"ok": len(calls) - 1, "429": 1}
    (throttled,) = [s for s in calls if s["attributes"]["google.status"] == "429"]
    assert throttled["parent_id"] == first["span_id"]
    apis = Counter(s["attributes"]["google.api"] for s in calls)
    assert apis["calendar"] == parents["sync.ingest_calendar"]
    assert apis["gmail"] == parents["sync.ingest_gmail"]
    methods = {s["attributes"]["google.method"] for s in calls}
    assert {"gmail.users.messages.list", "gmail.users.messages.get"} <= methods
    assert "calendar.events.list" in methods


def test_a_retried_attempt_links_to_the_attempt_before_it(
    jobsys_env: Env, start_workers: StartWorkers, span_file: Path
) -> None:
    # Given a node tracing to the file, logging JSON
    (node,) = start_workers(
        1, env={"JOBSYS_TRACE_FILE": str(span_file), "JOBSYS_LOG_FORMAT": "json"}
    )

    # When a job fails once, waits in the backlog and is published again from its row
    job_id = uuid.UUID(kinds.flaky.delay("user-1", key="trace-flaky", failures=1).id)
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=60, what="the job to finish")
    assert job.attempt == 2
    spans = wait_until(
        lambda: once_recorded(span_file, "test.flaky", "succeeded"),
        timeout=30,
        what="the second attempt's span",
    )

    # Then both attempts are children of the enqueue, in its trace
    (enqueue,) = [s for s in spans if s["name"] == "enqueue test.flaky"]
    first, second = sorted(
        attempts(spans, "test.flaky"), key=lambda s: s["attributes"]["jobsys.attempt"]
    )
    assert [first["parent_id"], second["parent_id"]] == [enqueue["span_id"]] * 2
    assert {first["trace_id"], second["trace_id"]} == {enqueue["trace_id"]}
    # And the first ended retried, as an error; the second succeeded
    assert (first["attributes"]["jobsys.outcome"], first["status"]) == ("retried", "ERROR")
    assert (second["attributes"]["jobsys.outcome"], second["status"]) == ("succeeded", "UNSET")
    # And the second links to the first, and the first to nothing
    assert first["links"] == []
    assert second["links"] == [
        {
            "trace_id": first["trace_id"],
            "span_id": first["span_id"],
            "attributes": {"jobsys.link": "previous_attempt"},
        }
    ]
    # And the lines the node logged during each attempt carry the trace's id
    lines = [json.loads(x) for x in node.log_path.read_text().splitlines() if x.startswith("{")]
    retry = [e for e in lines if e.get("event") == "job.retry" and e.get("job_id") == str(job_id)]
    assert [e.get("trace_id") for e in retry] == [enqueue["trace_id"]]
