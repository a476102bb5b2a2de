from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_describes_the_whole_deployment() -> None:
    # Given the compose file (no Docker engine here: it is validated, not run)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    # Then every part of a deployment is there
    assert {"postgres", "redis", "migrate", "worker", "beat", "flower"} <= set(services)
    # and Redis keeps what it is given
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    # and the app services reach the stores by URL and start after migrations
    for name in ("worker", "beat", "flower"):
        env = services[name]["environment"]
        assert env["JOBSYS_DATABASE_URL"].startswith("postgresql://")
        assert env["JOBSYS_BROKER_URL"].startswith("redis://")
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["worker"]["command"][:4] == ["celery", "-A", "jobsys", "worker"]
    assert services["migrate"]["command"] == ["jobsys", "db", "upgrade"]


def test_flower_asks_for_a_login_and_listens_on_loopback_only() -> None:
    # Given the compose file's Flower service
    flower = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["flower"]
    # Then every published port is bound to 127.0.0.1
    assert flower["ports"] and all(str(p).startswith("127.0.0.1:") for p in flower["ports"])
    # and it requires basic auth whose credentials must be given (no default password)
    (auth,) = [a for a in flower["command"] if a.startswith("--basic-auth=")]
    assert auth.startswith("--basic-auth=${FLOWER_BASIC_AUTH:?")


def test_dockerfile_copies_what_the_package_needs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for part in ("jobsys", "migrations", "celeryconfig.py", "pyproject.toml"):
        assert f"COPY {part}" in text or f" {part}" in text


def test_a_worker_started_with_a_bad_setting_says_so_in_one_line() -> None:
    # Given a malformed setting, as an operator might export it
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    env.update(
        JOBSYS_READY_MAX="0",
        JOBSYS_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x",
        JOBSYS_BROKER_URL="redis://127.0.0.1:1/0",
    )

    # When `celery -A jobsys worker` starts
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "jobsys", "worker", "-c", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it exits at once with one line naming the setting, the rule and the value
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "jobsys: error: JOBSYS_READY_MAX: Input should be greater than or equal to 1 (got '0')"
    ]


def test_a_worker_never_prints_a_configured_password() -> None:
    # Given a malformed database URL that carries a password
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    env.update(
        JOBSYS_DATABASE_URL="mysql://jobsys:pg-s3cret@db/jobsys",
        JOBSYS_BROKER_URL="redis://127.0.0.1:1/0",
    )

    # When `celery -A jobsys worker` starts
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "jobsys", "worker", "-c", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then its one line names the URL with the password masked
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "JOBSYS_DATABASE_URL='mysql://jobsys:***@db/jobsys' is not a valid URL" in line
    assert "pg-s3cret" not in done.stderr + done.stdout
