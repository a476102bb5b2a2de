"""`jobsys token` and `jobsys api` as an operator runs them: real processes, real uvicorn."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from jobsys.store.users import UserStore
from tests.conftest import Env
from tests.support.valkey import free_port
from tests.support.wait import wait_until
from tests.support.workers import REPO


def test_token_create_prints_the_secret_once_and_stores_only_its_hash(jobsys_env: Env) -> None:
    UserStore(jobsys_env.store).add("ann@example.com")
    made = jobsys_env.cli("token", "create", "--user", "ann@example.com", "--name", "ann-app")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("jobsys_") and len(secret) > 40
    assert "shown once" in made.stderr
    listed = jobsys_env.cli("token", "list", "--json")
    assert secret not in listed.stdout
    (token,) = json.loads(listed.stdout)
    assert (token["name"], token["admin"], token["revoked_at"]) == ("ann-app", False, None)
    with jobsys_env.store.transaction() as conn:
        stored = conn.exec_driver_sql("SELECT digest FROM api_tokens").scalar_one()
    assert bytes(stored) == hashlib.sha256(secret.encode()).digest()
    revoked = jobsys_env.cli("token", "revoke", str(token["id"]))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout


def test_token_create_needs_exactly_one_scope(jobsys_env: Env) -> None:
    for args in ([], ["--admin", "--user", "ann@example.com"]):
        done = jobsys_env.cli("token", "create", *args)
        assert done.returncode == 2, done
        assert "--admin or --user" in done.stderr
        assert "Traceback" not in done.stderr
    assert jobsys_env.count_rows("api_tokens") == 0


@dataclass
class Served:
    base: str
    log: Path


@contextlib.contextmanager
def serving(env: Env, tmp_path: Path, *options: str) -> Iterator[Served]:
    """`jobsys api` on a free port with ``options``, until the block ends."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    environ.update(env.environ, PYTHONPATH=str(REPO), JOBSYS_LOG_FORMAT="json")
    jobsys = str(Path(sys.executable).with_name("jobsys"))
    path = tmp_path / "api.log"
    log = path.open("w")
    args = [jobsys, "api", "--port", str(port), *options]
    process = subprocess.Popen(args, env=environ, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=60, what="jobsys api answering /healthz")
        yield Served(base, path)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def served(jobsys_env: Env, tmp_path: Path) -> Iterator[str]:
    """`jobsys api` with two uvicorn workers; its base URL."""
    with serving(jobsys_env, tmp_path, "--workers", "2") as api:
        yield api.base


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_jobsys_api_serves_jobs_to_a_token(jobsys_env: Env, served: str) -> None:
    assert jobsys_env.cli("db", "roles").returncode == 0
    ann = UserStore(jobsys_env.store).add("ann@example.com")
    secret = jobsys_env.cli("token", "create", "--user", ann.id).stdout.strip()
    auth = {"Authorization": f"Bearer {secret}"}
    made = httpx.post(f"{served}/api/jobs", json={"kind": "test.echo"}, headers=auth, timeout=10)
    assert made.status_code == 201, made.text
    job = jobsys_env.store.get_job(uuid.UUID(made.json()["id"]))
    assert job.user_id == ann.id
    assert httpx.get(f"{served}/readyz", timeout=10).json()["ready"] is True
    schema = httpx.get(f"{served}/openapi.json", timeout=10).json()
    assert "/api/jobs/{job_id}/cancel" in schema["paths"]
    refused = httpx.get(f"{served}/api/jobs", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "unauthenticated"


def test_jobsys_api_logs_json_lines_through_jobsys_processors(
    jobsys_env: Env, tmp_path: Path
) -> None:
    # Given the API with its access log, JSON logs asked for
    with serving(jobsys_env, tmp_path, "--access-log") as api:
        assert httpx.get(f"{api.base}/api/jobs", timeout=10).status_code == 401
    # Then every line it wrote, uvicorn's own included, is one JSON object of jobsys's shape
    lines = [line for line in api.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"event", "level", "logger", "timestamp", "pid"} <= r.keys() for r in records)
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers
    access = [r["event"] for r in records if r["logger"] == "uvicorn.access"]
    (call,) = [line for line in access if "GET /api/jobs" in line]
    assert "401" in call
