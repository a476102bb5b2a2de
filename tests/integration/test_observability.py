"""Observability with real workers: a node's /metrics after jobs ran in prefork children,
the API's /metrics, and the JSON log lines a node writes while its jobs run."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobsys import Job, Status
from tests.conftest import Env, StartWorkers
from tests.integration.api_support import Api
from tests.support import kinds, obs_kinds
from tests.support.wait import wait_until
from tests.support.workers import WORKER_IMPORTS, Worker

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return parse(reply.read().decode())


def scrape_once_counted(port: int, wanted: float) -> Samples | None:
    """A scrape once the node has counted ``wanted`` attempts (the last outcome is
    counted just after its row is written), else None."""
    samples = scrape(port)
    return samples if sum(jobs_total(samples).values()) >= wanted else None


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def run_mixed_jobs(env: Env) -> list[Job]:
    """Three jobs that succeed, one that fails twice then succeeds, one that dies (3 tries)."""
    env.redis.set("obs-dead:broken", 1)
    results = [kinds.echo.delay("user-1", value=n) for n in range(3)]
    results.append(kinds.flaky.delay("user-2", key="obs-flaky", failures=2))
    results.append(kinds.broken.delay("user-3", key="obs-dead"))
    ids = [uuid.UUID(r.id) for r in results]
    return [
        wait_until(lambda i=i: env.finished(i), timeout=60, what="the jobs to finish") for i in ids
    ]


EXPECTED_JOBS = {
    ("test.echo", "succeeded"): 3.0,
    ("test.flaky", "retried"): 2.0,
    ("test.flaky", "succeeded"): 1.0,
    ("test.broken", "retried"): 2.0,
    ("test.broken", "dead"): 1.0,
}


def jobs_total(samples: Samples) -> dict[tuple[str, str], float]:
    found = named(samples, "jobsys_jobs_total")
    return {(dict(k)["kind"], dict(k)["outcome"]): v for k, v in found.items()}


def test_a_node_serves_exact_counts_of_jobs_run_in_its_prefork_children(
    jobsys_env: Env, start_workers: StartWorkers, tmp_path: Path
) -> None:
    # Given a node of two prefork children serving /metrics, in multiprocess mode
    port, folder = free_port(), tmp_path / "metrics"
    (node,) = start_workers(
        1,
        concurrency=2,
        env={"JOBSYS_METRICS_PORT": str(port), "JOBSYS_METRICS_DIR": str(folder)},
    )

    # When jobs succeed, retry and die
    jobs = run_mixed_jobs(jobsys_env)
    assert [j.status for j in jobs] == [Status.SUCCEEDED] * 4 + [Status.DEAD]
    # (the children recorded them: every attempt ran in a process other than the node's)
    assert {j.worker_pid for j in jobs} - {None, node.pid} == {j.worker_pid for j in jobs}

    # Then, once the last outcome is counted, a scrape of the node finds each count exact
    wanted = sum(EXPECTED_JOBS.values())
    samples = wait_until(
        lambda: scrape_once_counted(port, wanted), timeout=15, what="every attempt counted"
    )
    assert jobs_total(samples) == EXPECTED_JOBS
    attempts = {"test.echo": 3.0, "test.flaky": 3.0, "test.broken": 3.0}
    for kind, n in attempts.items():
        assert value(samples, "jobsys_job_duration_seconds_count", kind=kind) == n
        latency = "jobsys_job_start_latency_seconds_count"
        assert value(samples, latency, kind=kind, queue="default") == n
    # And the fleet's gauges come from PostgreSQL: one dead letter, one live node, nothing queued
    assert named(samples, "jobsys_dead_letters") == {frozenset({("kind", "test.broken")}): 1.0}
    assert value(samples, "jobsys_workers", state="alive") == 1.0
    assert named(samples, "jobsys_queue_depth") == {}
    assert value(samples, "jobsys_lease_expired_total") == 0.0
    # And the counts were kept in the node's own folder, per process
    db_files = {p.name for p in (folder / node.node).glob("counter_*.db")}
    assert {f"counter_{j.worker_pid}.db" for j in jobs} <= db_files


def test_no_sample_names_a_user(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given a node serving /metrics that ran jobs for three users
    port = free_port()
    start_workers(1, env={"JOBSYS_METRICS_PORT": str(port)})
    run_mixed_jobs(jobsys_env)

    # When it is scraped
    samples = wait_until(
        lambda: scrape_once_counted(port, 9), timeout=15, what="every attempt counted"
    )

    # Then no label is a user's, nor has a user's id as its value
    labels = {k: v for (_, ls) in samples for k, v in ls}
    assert "user_id" not in labels and "user" not in labels
    assert not {"user-1", "user-2", "user-3"} & set(labels.values())


def test_the_api_serves_the_fleets_gauges_without_a_token(api: Api) -> None:
    # Given two due jobs and one delayed, waiting in the backlog (no worker runs)
    kinds.echo.delay("user-1", value=1)
    kinds.echo.delay("user-2", value=2)
    kinds.echo.apply_async(("user-2",), {"value": 3}, countdown=600)

    # When Prometheus scrapes the API, without a token
    reply = api.client.get("/metrics")

    # Then it reads the queue depths and the oldest due job from PostgreSQL
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = parse(reply.text)
    assert named(samples, "jobsys_queue_depth") == {
        frozenset({("queue", "default"), ("state", "backlog")}): 2.0,
        frozenset({("queue", "default"), ("state", "delayed")}): 1.0,
    }
    assert value(samples, "jobsys_oldest_queued_seconds", queue="default") >= 0.0
    assert named(samples, "jobsys_dead_letters") == {}
    # And /metrics is not part of the API's schema
    assert "/metrics" not in api.client.get("/openapi.json").json()["paths"]


def log_lines(path: Path, offset: int) -> list[dict[str, Any]]:
    """The complete lines written since ``offset``, each parsed as JSON."""
    written = path.read_bytes()[offset:]
    lines = written[: written.rfind(b"\n") + 1].decode().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return parsed


def done_logging(path: Path, offset: int) -> list[dict[str, Any]] | None:
    """The lines since ``offset`` once Celery logged the end of every job's last attempt."""
    lines = log_lines(path, offset)
    ends = [e for e in lines if " succeeded in " in e["event"] or " raised " in e["event"]]
    return lines if len(ends) >= 5 else None


def after_ready(node: Worker) -> int:
    """The log's offset just past Celery's ``ready.`` line (the banner comes before it)."""

    def probe() -> int | None:
        text = node.log_path.read_bytes()
        at = text.find(f'"{node.node} ready."'.encode())
        return text.index(b"\n", at) + 1 if at >= 0 and b"\n" in text[at:] else None

    return wait_until(probe, timeout=15, what=f"{node.node} to log ready")


def test_every_line_a_node_logs_during_its_jobs_is_json_carrying_the_jobs_ids(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node logging in JSON mode at info level
    (node,) = start_workers(1, env={"JOBSYS_LOG_FORMAT": "json"})
    offset = after_ready(node)

    # When jobs succeed, retry and die
    jobs = {str(j.id): j for j in run_mixed_jobs(jobsys_env)}
    lines = wait_until(
        lambda: done_logging(node.log_path, offset), timeout=15, what="the last attempt's lines"
    )

    # Then every line written since parses as JSON, with one timestamp and its own level
    assert lines and all({"event", "level", "timestamp", "pid"} <= set(e) for e in lines)
    # And every line a pool child wrote names its job: id, user, kind and attempt
    children = [e for e in lines if e["pid"] != node.pid]
    assert {e.get("job_id") for e in children} == set(jobs)
    for e in children:
        job = jobs[e["job_id"]]
        assert (e["user_id"], e["kind"]) == (job.user_id, job.kind), e
        assert 1 <= e["attempt"] <= job.attempt, e
    # And Celery's own lines keep their level (a success is info, not warning)
    succeeded = [e for e in children if "succeeded in" in e["event"]]
    assert len(succeeded) == 4 and {e["level"] for e in succeeded} == {"info"}
    retries = [e for e in children if e["event"] == "job.retry"]
    assert sorted((e["kind"], e["attempt"]) for e in retries) == [
        ("test.broken", 1), ("test.broken", 2), ("test.flaky", 1), ("test.flaky", 2),
    ]  # fmt: skip


def handler_lines(path: Path, offset: int) -> list[dict[str, Any]] | None:
    """The chatty handler's four lines since ``offset``, once all are written."""
    found = [e for e in log_lines(path, offset) if e["event"].startswith("chatty")]
    return found if len(found) >= 4 else None


def test_a_handlers_own_lines_carry_its_job_and_run_whichever_way_it_logs(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node logging in JSON mode, and a pipeline-like job whose payload names its run
    env = {"JOBSYS_LOG_FORMAT": "json", "JOBSYS_IMPORTS": f"{WORKER_IMPORTS},{obs_kinds.__name__}"}
    (node,) = start_workers(1, env=env)
    offset = after_ready(node)

    # When its handler logs through ctx.log, structlog, logging and print()
    job_id = uuid.UUID(obs_kinds.chatty.delay("user-9", run_id="run-7").id)
    wait_until(lambda: jobsys_env.finished(job_id), timeout=30, what="the job to finish")
    lines = wait_until(
        lambda: handler_lines(node.log_path, offset), timeout=15, what="the handler's lines"
    )

    # Then each is a JSON line with the job's ids and its run, at its own level
    ids = {"job_id": str(job_id), "user_id": "user-9", "kind": "test.chatty", "attempt": 1}
    ids |= {"run_id": "run-7"}
    assert [{k: e.get(k) for k in ids} for e in lines] == [ids] * 4
    assert [(e["event"], e["level"]) for e in lines] == [
        ("chatty.context", "info"),
        ("chatty.structlog", "warning"),
        ("chatty stdlib 3", "warning"),
        ("chatty print 4", "warning"),
    ]
