"""Flower over a real jobsys node: ``celery -A jobsys flower`` finds the node and its jobs
through its HTTP API, and no housekeeping task (the sweeper, the schedule's tick, the
alert detector) fills its task list."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobsys import Status
from jobsys.alerts.task import evaluate_alerts
from jobsys.engine.worker import sweep
from tests.conftest import Env, StartWorkers
from tests.integration.test_observability import free_port
from tests.support import kinds
from tests.support.wait import wait_until
from tests.support.workers import REPO

pytestmark = pytest.mark.integration

LOGIN = "admin:flower-test"


class Flower:
    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.process, self.log = port, process, log

    def get(self, path: str, *, auth: bool = True) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if auth:
            token = base64.b64encode(LOGIN.encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=20) as reply:
            return json.loads(reply.read())

    def status_without_login(self, path: str) -> int:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=20)
        except urllib.error.HTTPError as e:
            return e.code
        return 200

    def answering(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"flower exited:\n{self.log.read_text(errors='replace')}")
        try:
            self.get("/api/workers")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True


@pytest.fixture
def flower(jobsys_env: Env, tmp_path: Path) -> Iterator[Flower]:
    """``celery -A jobsys flower`` with a login, as the README runs it."""
    port, log = free_port(), tmp_path / "flower.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSYS_", "FLOWER_"))}
    env.update(jobsys_env.environ)
    env["PYTHONPATH"] = str(REPO)
    command = [
        sys.executable, "-m", "celery", "-A", "jobsys", "flower",
        "--address=127.0.0.1", f"--port={port}", f"--basic-auth={LOGIN}",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
    node = Flower(port, process, log)
    try:
        wait_until(node.answering, timeout=30, what="Flower to answer")
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def tasks_seen(flower: Flower, ids: set[str]) -> dict[str, Any] | None:
    """Flower's task list once every job in ``ids`` shows as succeeded there."""
    tasks: dict[str, Any] = flower.get("/api/tasks")
    done = {i for i in ids if tasks.get(i, {}).get("state") == "SUCCESS"}
    return tasks if done == ids else None


def probe_seen(env: Env, flower: Flower, probes: set[str]) -> bool:
    """Run one probe job (its id joins ``probes``): whether Flower saw it succeed."""
    probe = kinds.echo.delay("user-probe", value=-1)
    probes.add(probe.id)
    wait_until(lambda: env.finished(uuid.UUID(probe.id)), timeout=30, what="a probe job")
    return tasks_seen(flower, {probe.id}) is not None


def test_flower_shows_jobsys_nodes_and_jobs_and_no_sweeps(
    jobsys_env: Env, start_workers: StartWorkers, flower: Flower
) -> None:
    # Given a node (it sweeps every second from its heartbeat thread) and Flower
    (node,) = start_workers(1, concurrency=2)

    # Then Flower's API finds the node, and asks for a login first
    workers = wait_until(
        lambda: flower.get("/api/workers?refresh=1") or None, timeout=30, what="workers"
    )
    assert node.node in workers
    assert flower.status_without_login("/api/workers") == 401

    # (Flower turns the node's task events on a few seconds after it starts: a probe
    # job run until Flower sees one shows they are on)
    # (A probe running while they turn on shows in Flower without its name: its
    # task-received event was not sent, its later events were.)
    probes: set[str] = set()
    wait_until(lambda: probe_seen(jobsys_env, flower, probes), timeout=60, what="task events on")

    # When jobs run, and a sweep and an alert evaluation are asked for as tasks
    results = [kinds.echo.delay("user-1", value=n) for n in range(3)]
    ids = {r.id for r in results}
    for i in ids:
        job = wait_until(lambda i=i: jobsys_env.finished(uuid.UUID(i)), timeout=60, what="jobs")
        assert job.status is Status.SUCCEEDED
    swept, evaluated = sweep.delay(), evaluate_alerts.delay()

    # Then Flower lists every job under its kind, succeeded on that node
    tasks = wait_until(lambda: tasks_seen(flower, ids), timeout=30, what="Flower to see the jobs")
    for i in ids:
        assert tasks[i]["name"] == "test.echo"
        assert tasks[i]["worker"] == node.node
    # And no housekeeping task: the requested sweep and evaluation ran but sent no events
    wait_until(lambda: jobsys_env.queue_length("jobsys.control") == 0, timeout=30, what="sweep")
    names = {t["name"] for i, t in flower.get("/api/tasks").items() if i not in probes}
    assert names == {"test.echo"}
    assert swept.id not in flower.get("/api/tasks")
    assert evaluated.id not in flower.get("/api/tasks")
