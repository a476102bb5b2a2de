"""`jobsys token` and `jobsys api` as an operator runs them: real processes, real uvicorn."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
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


@pytest.fixture
def served(jobsys_env: Env, tmp_path: Path) -> Iterator[str]:
    """`jobsys api` on a free port, two uvicorn workers; its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    env.update(jobsys_env.environ, PYTHONPATH=str(REPO))
    jobsys = str(Path(sys.executable).with_name("jobsys"))
    log = (tmp_path / "api.log").open("w")
    args = [jobsys, "api", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=60, what="jobsys api answering /healthz")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


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
